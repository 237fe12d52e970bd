"""The PyTorch backend: generated modules depend only on torch and the standard library.

Nothing here imports torch: `lowering` and `emit` only produce source text (the runtime
helpers of `backends/runtime/torch_helpers.py` are read as text), so checking a model never
pays for importing torch.
"""
