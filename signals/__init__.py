"""Domain pieces shared by every layer: settings, errors, and the `signals` command line."""
