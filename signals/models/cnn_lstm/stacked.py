"""Many same-shape CNN-LSTMs in one batched computation (issue 5): one call per `/batch`, not one per model.

Why hand-written: `torch.vmap` over `functional_call` fails on CPU (torch 2.13: "Batching rule not implemented
for aten::lstm.input"), so the network is re-expressed with the model as a batch dimension:
- samples go into slots of b windows, each slot tied to one model; b trades zero padding (rarer models) against
  weight copies (one per slot) and is picked per batch by `_slot_size` (b = 1: one slot per window);
- conv blocks: one grouped `conv1d` (groups = slots), eval BatchNorm folded into the conv weights;
- LSTM: the input projection of all 60 steps in one `baddbmm`, then 60 steps of one `baddbmm` + gates. PyTorch
  gate order i, f, g, o and both biases; rows are reordered to i, f, o, g and the g rows doubled (exact), so a
  single sigmoid covers all four gates (tanh(x) = 2 sigmoid(2x) - 1; CPU tanh costs ~4x sigmoid per element);
- an average pool over `pool` bars after the conv blocks, as the network does;
- head: two `baddbmm` give logits; temperature and softmax are applied per row by `StackedGroup`, because
  models that share one network (a pooled network serves every pair of a timeframe, each pair with its own
  temperature) are stacked once, not once per pair.
Inference runs in float64 like each model's own path (`artifact.scale`), so after the one rounding to float32
the probabilities equal the per-model ones bit for bit (batching changes float64 results ~1e-16).

A batch that uses at most `PLAIN_UP_TO` models runs each model's own `predict_proba`: there the native LSTM
loop wins. Stacked without this dispatch vs plain: 1 model x 64 windows 24.0 vs 13.5 ms, 1 x 1 5.0 vs 1.3 ms
(wall), 2 models x 32 windows 17.5 vs 13.7 ms (CPU).

Measured: torch 2.13 CPU, 1 thread, default config, 34 distinct models; thread CPU time (wall time on this
shared 2-core box is 1.5-3x noisier), median of 5 rounds x 10 calls, loop = one `predict_proba` per used model.
Absolute numbers are ~3x what an idle core gives (1 model x 1 window is ~0.3 ms idle); the ratios held across runs.

    case                          per-model loop   stacked   speed-up
    34 models x 1 window               32.7 ms      14.8 ms    2.2x   (other runs: 42.8/17.7, 49.3/17.2)
    64 windows over 34 models          37.5 ms      26.3 ms    1.4x   (25 models used; other run 51.8/37.4)
    8 models x 8 windows               21.4 ms      14.6 ms    1.5x
    4 models x 16 windows              14.4 ms      17.0 ms    0.85x  (min 12.3 vs 12.8: a tie within noise)
    2 models x 32 windows              12.3 ms      12.1 ms    -      (dispatched: plain per model)
    1 model x 64 windows               11.3 ms      10.5 ms    -      (dispatched)
    1 model x 1 window                  1.05 ms      1.20 ms   -      (dispatched)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from signals.models.cnn_lstm.artifact import CnnLstmPredictor, calibrated
from signals.models.cnn_lstm.network import CnnLstmConfig

PLAIN_UP_TO: Final = 2  # a batch using at most this many models runs each model's own network instead


def _fold_batch_norm(conv: nn.Module, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval BatchNorm is an affine map per channel: fold it into the conv so a block costs one op, not two."""
    assert isinstance(conv, nn.Conv1d) and isinstance(norm, nn.BatchNorm1d)
    assert norm.running_mean is not None and norm.running_var is not None
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    return conv.weight * scale[:, None, None], (bias - norm.running_mean) * scale + norm.bias


def _ifog(rows: torch.Tensor, hidden: int) -> torch.Tensor:
    """PyTorch LSTM rows come as i, f, g, o; reorder to i, f, o, 2g (doubling is exact) for the step loop."""
    i, f, g, o = rows.split(hidden, dim=0)
    return torch.cat([i, f, o, 2.0 * g], dim=0)


def _linear(module: nn.Module) -> nn.Linear:
    assert isinstance(module, nn.Linear)
    return module


@dataclass
class _Layer:
    """One LSTM layer's weights stacked over models, transposed for `baddbmm`."""

    w_ih: torch.Tensor  # (M, C_in, 4H)
    w_hh: torch.Tensor  # (M, H, 4H)
    bias: torch.Tensor  # (M, 1, 4H) = b_ih + b_hh


class StackedCnnLstm:
    """Predictors sharing one `CnnLstmConfig` (and device), evaluated together: model index is an input."""

    def __init__(self, predictors: Sequence[CnnLstmPredictor]) -> None:
        if not predictors:
            raise ValueError("StackedCnnLstm needs at least one predictor")
        self.config: CnnLstmConfig = predictors[0].network.config
        self.device = predictors[0].device
        for predictor in predictors:
            if predictor.network.config != self.config or predictor.device != self.device:
                raise ValueError(
                    f"model {predictor.tag} has config/device {predictor.network.config}/{predictor.device}, "
                    f"the group has {self.config}/{self.device}; group them with stack_predictors"
                )
        for predictor in predictors:
            predictor.network.eval()  # the stack is built from eval-mode weights; the one-model path must agree
        self.predictors = list(predictors)
        # One more slot (a model's weights copied, then streamed each LSTM step) costs about one sample's compute;
        # measured flat between 0.1 and 4 on default-size models, so 1.
        self.gather_cost = 1.0
        with torch.no_grad():
            self._stack()

    def _stack(self) -> None:
        cfg, nets = self.config, [p.network for p in self.predictors]
        self.mean = np.stack([np.asarray(p.scaler.mean, dtype=np.float64) for p in self.predictors])  # (M, F)
        self.std = np.stack([np.asarray(p.scaler.std, dtype=np.float64) for p in self.predictors])
        self.conv_w: list[torch.Tensor] = []  # (M, C_out, C_in, k)
        self.conv_b: list[torch.Tensor] = []  # (M, C_out)
        for block in range(len(cfg.conv_channels)):
            folded = [_fold_batch_norm(net.conv[4 * block], net.conv[4 * block + 1]) for net in nets]
            self.conv_w.append(torch.stack([w for w, _ in folded]).contiguous())
            self.conv_b.append(torch.stack([b for _, b in folded]).contiguous())
        hidden = cfg.lstm_hidden
        self.layers: list[_Layer] = []
        for layer in range(cfg.lstm_layers):
            weights = [{k: v for k, v in net.lstm.named_parameters() if k.endswith(f"_l{layer}")} for net in nets]
            self.layers.append(
                _Layer(
                    w_ih=torch.stack([_ifog(w[f"weight_ih_l{layer}"], hidden).T for w in weights]).contiguous(),
                    w_hh=torch.stack([_ifog(w[f"weight_hh_l{layer}"], hidden).T for w in weights]).contiguous(),
                    bias=torch.stack(
                        [_ifog(w[f"bias_ih_l{layer}"] + w[f"bias_hh_l{layer}"], hidden)[None] for w in weights]
                    ).contiguous(),
                )
            )
        heads = [[_linear(net.head[i]) for net in nets] for i in (0, 3)]
        self.head_w = [torch.stack([linear.weight.T for linear in layer]).contiguous() for layer in heads]
        self.head_b = [torch.stack([linear.bias[None] for linear in layer]).contiguous() for layer in heads]

    def __len__(self) -> int:
        return len(self.predictors)

    def logits(self, model_index: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """(n, n_classes) float64 logits (temperature 1); row i uses model `model_index[i]` on `windows[i]`."""
        cfg = self.config
        index = np.asarray(model_index)
        if windows.ndim != 3 or windows.shape[1:] != (cfg.lookback, cfg.n_features):
            raise ValueError(
                f"windows must have shape (n, {cfg.lookback}, {cfg.n_features}); got {tuple(windows.shape)}"
            )
        if index.shape != (len(windows),) or not np.issubdtype(index.dtype, np.integer):
            raise ValueError(
                f"model_index must be an integer array of shape ({len(windows)},); got {index.dtype} {index.shape}"
            )
        if len(index) and (index.min() < 0 or index.max() >= len(self)):
            raise ValueError(f"model_index must lie in [0, {len(self)}); got {index.min()}..{index.max()}")
        if len(index) == 0:
            return np.empty((0, cfg.n_classes), np.float64)
        used, inverse, counts = np.unique(index, return_inverse=True, return_counts=True)
        if len(used) <= PLAIN_UP_TO:  # few models: their native LSTM beats the step loop below
            out = np.empty((len(index), cfg.n_classes), np.float64)
            for model in used.tolist():
                rows = index == model
                out[rows] = self.predictors[model].logits(windows[rows])
            return out
        per_slot = self._slot_size(counts)
        slots_per_model = -(-counts // per_slot)
        slot_model = np.repeat(used, slots_per_model)
        order = np.argsort(inverse, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
        slot = (np.cumsum(slots_per_model) - slots_per_model)[inverse] + rank // per_slot
        position = rank % per_slot
        # Same arithmetic as each model's own path (`artifact.scale`): float64 input.
        scaled = (np.asarray(windows, dtype=np.float64) - self.mean[index, None]) / self.std[index, None]
        batch = np.zeros((per_slot, len(slot_model), cfg.n_features, cfg.lookback), np.float64)
        batch[position, slot] = scaled.transpose(0, 2, 1)
        with torch.inference_mode():
            every = len(slot_model) == len(self) and bool((slot_model == np.arange(len(self))).all())
            models = None if every else torch.from_numpy(slot_model).to(self.device)
            logits = self._forward(torch.from_numpy(batch).to(self.device), models)
            return logits[torch.from_numpy(slot), torch.from_numpy(position)].cpu().numpy()

    def _slot_size(self, counts: np.ndarray) -> int:
        """Samples per slot: 1 copies weights once per sample, the largest count pads rarer models with zeros."""
        best, best_cost = 1, float("inf")
        for size in sorted({1, *np.unique(counts).tolist()}):
            n_slots = int((-(-counts // size)).sum())
            cost = n_slots * (size + self.gather_cost)
            if cost < best_cost:
                best, best_cost = size, cost
        return best

    def _forward(self, batch: torch.Tensor, models: torch.Tensor | None) -> torch.Tensor:
        """batch (b, S, F, T): b samples for each of S slots -> logits (S, b, n_classes).

        Slot s runs model `models[s]` (None: slot s runs model s, no weight gather).
        """

        def take(stacked: torch.Tensor) -> torch.Tensor:
            return stacked if models is None else stacked.index_select(0, models)

        cfg = self.config
        per_slot, n_slots = batch.shape[0], batch.shape[1]
        features = batch.reshape(per_slot, n_slots * cfg.n_features, cfg.lookback)
        for weight, bias in zip(self.conv_w, self.conv_b, strict=True):
            w = take(weight)
            features = F.conv1d(
                features, w.flatten(0, 1), take(bias).flatten(), padding=cfg.kernel_size // 2, groups=n_slots
            )
            features = F.gelu(features)
        if cfg.pool > 1:
            features = F.avg_pool1d(features, cfg.pool)  # pools each (slot, channel) row over time, as the network
        # (b, S*C, T) -> (S, T, b, C): time-major per slot, so step t of every sequence is one strided slice.
        sequence = features.view(per_slot, n_slots, -1, features.shape[-1]).permute(1, 3, 0, 2)
        for number, layer in enumerate(self.layers):
            sequence = self._lstm(sequence, take(layer.w_ih), take(layer.w_hh), take(layer.bias), number)
        last = sequence[:, -1]  # (S, b, H)
        hidden = F.gelu(torch.baddbmm(take(self.head_b[0]), last, take(self.head_w[0])))
        return torch.baddbmm(take(self.head_b[1]), hidden, take(self.head_w[1]))

    def _lstm(
        self, sequence: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor, number: int
    ) -> torch.Tensor:
        """(S, T, b, C) -> (S, T', b, H); T' = T except for the last layer, which keeps only its final state."""
        n_slots, steps, per_slot, channels = sequence.shape
        hidden = self.config.lstm_hidden
        projected = torch.baddbmm(bias, sequence.reshape(n_slots, steps * per_slot, channels), w_ih)
        projected = projected.view(n_slots, steps, per_slot, 4 * hidden)
        h = sequence.new_zeros(n_slots, per_slot, hidden)
        c = sequence.new_zeros(n_slots, per_slot, hidden)
        keep_all = number < len(self.layers) - 1
        outputs: list[torch.Tensor] = []
        for step in range(steps):
            gates = torch.baddbmm(projected[:, step], h, w_hh)
            # g rows were doubled at stack time: tanh(x) = 2 sigmoid(2x) - 1, so one sigmoid covers all four gates
            # (CPU tanh costs ~4x sigmoid per element here), and c = f c + i (2 s_g - 1).
            i, f, o, g = torch.sigmoid(gates).split(hidden, dim=-1)
            c = (f * c).addcmul_(i, g, value=2.0).sub_(i)
            h = o * torch.tanh(c)
            if keep_all:
                outputs.append(h)
        return torch.stack(outputs, dim=1) if keep_all else h[:, None]


@dataclass
class StackedGroup:
    """One stack of distinct networks, which slot each model name runs in, and each name's own temperature."""

    model: StackedCnnLstm
    index: dict[str, int] = field(default_factory=dict)
    temperature: dict[str, float] = field(default_factory=dict)

    def predict_proba(self, names: Sequence[str], windows: np.ndarray) -> np.ndarray:
        """By model name: (n, n_classes) float32 calibrated probabilities; a name not in this group raises KeyError."""
        slots = np.fromiter((self.index[n] for n in names), np.int64, len(names))
        temperatures = np.fromiter((self.temperature[n] for n in names), np.float64, len(names))
        return calibrated(self.model.logits(slots, windows), temperatures)


def stack_predictors(predictors: Mapping[str, CnnLstmPredictor]) -> list[StackedGroup]:
    """Stack the distinct networks among `predictors` by (config, device); names sorted for a stable index.

    Predictors whose weights and scaler files are the same bytes (every pair of a pooled timeframe) share one slot.
    """
    groups: dict[tuple[str, str], dict[str, list[str]]] = {}
    for name in sorted(predictors):
        predictor = predictors[name]
        key = (predictor.network.config.model_dump_json(), str(predictor.device))
        groups.setdefault(key, {}).setdefault(predictor.network_id, []).append(name)
    out = []
    for networks in groups.values():
        representatives = [predictors[names[0]] for names in networks.values()]
        index = {name: slot for slot, names in enumerate(networks.values()) for name in names}
        temperature = {name: predictors[name].temperature for names in networks.values() for name in names}
        out.append(StackedGroup(StackedCnnLstm(representatives), index, temperature))
    return out
