"""Language identification on a frozen encoder: head (weighted layer sum), training, evaluation."""
