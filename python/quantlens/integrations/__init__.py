"""Bridges from quantlens to other libraries; each submodule imports its library lazily.

- :mod:`quantlens.integrations.transformers`: GGUF checkpoints into transformers state
  dicts, equal to transformers' own loader, decoded by quantlens.
"""
