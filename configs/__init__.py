"""The preset table (presets.yaml), installed as instseg.configs."""
