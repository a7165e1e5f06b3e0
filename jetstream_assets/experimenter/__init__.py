"""experimenter."""
