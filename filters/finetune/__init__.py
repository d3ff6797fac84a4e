"""Fine-tuning: teach a zoo network the user's own classes from folders (the ``finetune`` command)."""
