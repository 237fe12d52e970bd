"""Pictures and summaries of a checked model, read from its IR (never re-inferred):
`dualnet graph` (`write.write_graph`: SVG, PNG, Graphviz DOT) and `dualnet check --summary`
(`summary.summarize`). Framework-free; the SVG and PNG layouts need the `graph` extra."""
