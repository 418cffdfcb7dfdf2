"""The PPO policy in the model store: import a trained policy as ``ppo-<tf>``, load it back for serving.

The policy is stored as the ``policy.zip`` that SB3's ``save`` writes. Its weights are torch state dicts
(SB3 reads them with ``weights_only=True``), but its ``data`` part holds cloudpickled objects (spaces,
schedules, classes), and unpickling runs code. So `load_ppo` lets `models.registry.load_model` verify the
SHA-256 of ``policy.zip`` against the hash recorded at import *before* ``PPO.load`` opens the file, and
it also hands SB3 known-good replacements for every pickled entry it knows of, so that a valid file is
loaded without unpickling anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from signals.core.errors import ModelIntegrityError
from signals.core.vocab import ACTION_NAMES
from signals.features.ppo import CLIP, PPO_FEATURE_NAMES, PPO_OBS_SHAPE
from signals.models.card import ModelCard
from signals.models.registry import StoredModel, load_model, save_model

if TYPE_CHECKING:  # training is not on the serving path: only its result type is named here
    from stable_baselines3.common.policies import ActorCriticPolicy

    from signals.models.ppo.training import PpoTrainingResult

# torch, gymnasium and stable-baselines3 are imported where a policy is loaded or run: the API process and the
# service graph's declarations read names and contracts from this module and never load them (seconds at start).

logger = logging.getLogger(__name__)

POLICY_FILE: Final = "policy.zip"
FAMILY: Final = "ppo"
ALL_SYMBOLS: Final = "*"
PPO_FEATURE_HASH: Final[str] = hashlib.sha256("\n".join(PPO_FEATURE_NAMES).encode()).hexdigest()


def model_name(timeframe: str) -> str:
    return f"{FAMILY}-{timeframe}"


def import_ppo(result: PpoTrainingResult) -> StoredModel:
    """Save a trained policy as a new version of ``ppo-<tf>`` (labels family/timeframe/symbol="*")."""

    def write_policy(path: Path) -> None:
        result.model.save(path)

    return save_model(
        model_name(result.timeframe),
        labels={"family": FAMILY, "timeframe": result.timeframe, "symbol": ALL_SYMBOLS},
        files={POLICY_FILE: write_policy},
        metadata={**result.metadata(), "family": FAMILY, "feature_hash": PPO_FEATURE_HASH},
    )


@dataclass(frozen=True)
class PpoPolicy:
    """A loaded policy network; `act` scores a batch of observations in one forward pass."""

    tag: str
    version: str
    timeframe: str
    metadata: dict[str, Any]
    policy: ActorCriticPolicy

    @property
    def action_names(self) -> tuple[str, ...]:
        return ACTION_NAMES

    def act(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, 50, 10) observations -> deterministic actions (N,), probabilities (N, 3), state values (N,)."""
        import torch

        batch = _checked_batch(observations)
        with torch.inference_mode():
            obs_tensor, _ = self.policy.obs_to_tensor(batch)
            distribution = self.policy.get_distribution(obs_tensor).distribution
            assert isinstance(distribution, torch.distributions.Categorical), "a Discrete(3) policy is categorical"
            probabilities = distribution.probs
            values = self.policy.predict_values(obs_tensor).squeeze(-1)
        probs = probabilities.cpu().numpy()
        return probs.argmax(axis=1), probs, values.cpu().numpy()


def _checked_batch(observations: np.ndarray) -> np.ndarray:
    if not isinstance(observations, np.ndarray):
        raise ValueError(f"observations must be a numpy array of shape (N, 50, 10), got {type(observations).__name__}")
    if observations.ndim != 3 or observations.shape[1:] != PPO_OBS_SHAPE or observations.shape[0] == 0:
        raise ValueError(
            f"observations have shape {observations.shape}; expected (N, {PPO_OBS_SHAPE[0]}, {PPO_OBS_SHAPE[1]}) "
            f"with N >= 1: N windows of {PPO_OBS_SHAPE[0]} bars x features {list(PPO_FEATURE_NAMES)}"
        )
    batch = observations.astype(np.float32, copy=False)
    if not np.isfinite(batch).all():
        raise ValueError("observations hold NaN or inf")
    return batch


def check_contract(stored: StoredModel) -> None:
    """Refuse a model built for another observation than the one `features.ppo` produces today."""
    card = stored.card
    if stored.labels.get("family") != FAMILY:
        raise ModelIntegrityError(f"model {stored.tag} is not a PPO policy (family {stored.labels.get('family')!r})")
    if (
        list(card.feature_names or []) != list(PPO_FEATURE_NAMES)
        or card.feature_hash != PPO_FEATURE_HASH
        or list(card.obs_shape or []) != list(PPO_OBS_SHAPE)
        or list(card.action_names or []) != list(ACTION_NAMES)
    ):
        raise ModelIntegrityError(
            f"model {stored.tag} was trained on features {card.feature_names} / actions "
            f"{card.action_names}, but serving builds {list(PPO_FEATURE_NAMES)} / {list(ACTION_NAMES)}; "
            "re-train it with `signals train ppo`"
        )


def _safe_objects(card: ModelCard) -> dict[str, Any]:
    """Replacements for the cloudpickled entries of an SB3 PPO zip: SB3 then unpickles none of them."""
    from gymnasium import spaces
    from stable_baselines3.common.buffers import RolloutBuffer
    from stable_baselines3.common.policies import ActorCriticPolicy

    clip_range = card.clip_range
    return {
        "policy_class": ActorCriticPolicy,
        "observation_space": spaces.Box(low=-CLIP, high=CLIP, shape=PPO_OBS_SHAPE, dtype=np.float32),
        "action_space": spaces.Discrete(len(ACTION_NAMES)),
        "rollout_buffer_class": RolloutBuffer,
        "clip_range": clip_range,
        "lr_schedule": lambda _: 0.0,
        "_last_obs": None,
        "_last_episode_starts": None,
        "_last_original_obs": None,
        "ep_info_buffer": None,
        "ep_success_buffer": None,
    }


ZIP_ENTRIES: Final = frozenset(
    {
        "data",
        "pytorch_variables.pth",
        "policy.pth",
        "policy.optimizer.pth",
        "_stable_baselines3_version",
        "system_info.txt",
    }
)


def check_zip(tag: str, path: Path, replaced: set[str]) -> None:
    """Refuse a policy zip that SB3 would unpickle anything from: an entry SB3's `save` does not write, or a
    cloudpickled (``:serialized:``) value in ``data`` that `_safe_objects` does not replace. Runs before
    SB3 opens the file; the `.pth` entries are read by torch with ``weights_only=True``."""
    try:
        with zipfile.ZipFile(path) as archive:
            extra = sorted(set(archive.namelist()) - ZIP_ENTRIES)
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise ModelIntegrityError(f"model {tag}: {POLICY_FILE} is not an SB3 policy archive ({error})") from error
    if extra:
        raise ModelIntegrityError(f"model {tag}: {POLICY_FILE} holds entries SB3 does not write: {extra}; refused")
    pickled = sorted(k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v and k not in replaced)
    if pickled:
        raise ModelIntegrityError(
            f"model {tag}: {POLICY_FILE} holds pickled values the loader does not replace: {pickled}; refused "
            "(loading them would run code from the file)"
        )


class _NoOptimizer:
    """Stands in for the policy's Adam: serving never steps the policy, and building a torch optimizer imports
    torch._dynamo (and sympy), ~1.3 s of CPU at every start of the PPO runner."""

    def __init__(self, params: Any, lr: float = 0.0, **kwargs: Any) -> None:
        del params, lr, kwargs


def load_ppo(tag: str = "ppo-1h:latest", device: str = "cpu") -> PpoPolicy:
    """Load a stored policy for inference.

    Order matters: `load_model` verifies the SHA-256 of ``policy.zip`` (raising `ModelIntegrityError`
    naming the file) and the metadata contract is checked, both before SB3 reads the zip, because the zip
    contains pickled parts. Only the policy network is built (SB3's ``PPO.load`` builds the whole algorithm, the
    rollout buffer and the optimizer, none of which inference uses), with the weights of ``policy.pth``.
    """
    from stable_baselines3.common import save_util
    from stable_baselines3.common.policies import ActorCriticPolicy

    stored = load_model(tag)
    check_contract(stored)
    replacements = _safe_objects(stored.card)
    check_zip(stored.tag, stored.file(POLICY_FILE), set(replacements))
    data, params, _ = save_util.load_from_zip_file(stored.file(POLICY_FILE), device=device, custom_objects=replacements)
    if data is None or params is None or "policy" not in params:
        raise ModelIntegrityError(f"model {stored.tag}: {POLICY_FILE} holds no policy weights")
    policy_kwargs = {k: v for k, v in (data.get("policy_kwargs") or {}).items() if k != "device"}
    policy = ActorCriticPolicy(
        replacements["observation_space"],
        replacements["action_space"],
        replacements["lr_schedule"],
        use_sde=bool(data.get("use_sde", False)),
        **{**policy_kwargs, "optimizer_class": _NoOptimizer},
    )
    policy.load_state_dict(params["policy"])  # type: ignore[arg-type]  # strict; SB3 types a state dict as a Tensor
    policy = policy.to(device)
    policy.set_training_mode(False)
    logger.info("loaded %s on %s", stored.tag, device)
    return PpoPolicy(
        tag=stored.tag,
        version=stored.version,
        timeframe=stored.labels.get("timeframe", str(stored.card.timeframe)),
        metadata=stored.metadata,
        policy=policy,
    )
