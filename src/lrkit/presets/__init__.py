"""Presets: every peer library's schedules by their own names and arguments, as pure lrkit schedules.

`lrkit.presets.torch`, `.keras`, `.optax` and `.hf` each hold one function per schedule the
peer ships, with the peer's name and argument names (where the peer takes an optimizer, the
preset takes the base lr in its place). Each returns an ordinary `lrkit.Schedule`: frozen,
picklable, `parse(repr(s)) == s`, equal to the peer's values at every step, also where
the peer's convention differs from lrkit's (torch's and HF's cosines rise again past their
horizon; Keras' PiecewiseConstantDecay switches after a boundary). No module here imports
torch, keras, jax or transformers: the peers are needed only to check the presets.

Example:
    >>> from lrkit.presets import torch as presets
    >>> presets.StepLR(0.1, step_size=30)
    step_decay(start=0.1, factor=0.1, every=30)
"""
