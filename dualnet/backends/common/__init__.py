"""What the Python-source backends share: the class writer, lowering-table helpers,
names, escaping and the checks of generated source."""
