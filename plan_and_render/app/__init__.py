"""The app layer: the command line, the Python API, chat sessions and their store, run folders."""
