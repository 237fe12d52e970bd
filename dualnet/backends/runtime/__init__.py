"""The runtime helpers of generated files, one module per backend (`torch_helpers`,
`keras_helpers`). dualnet never imports them: `backends.runtime_source` reads their text."""
