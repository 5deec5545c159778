"""YAML run-config presets, one per generator preset (installed as instseg.configs)."""
