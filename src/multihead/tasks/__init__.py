"""Tasks end to end (data, model, trainer, metrics): the Python API behind the command line."""
