"""The CPU reproduction study: ``plan`` (methods, seeds, steps), ``run`` (training and evaluation), ``report``."""
