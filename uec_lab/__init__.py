"""The lab: CPU demo tasks, the reproduction study and the GPU smoke test. It imports the recipe (``uec_recipe``);
the recipe never imports it (tests/test_layout.py)."""
