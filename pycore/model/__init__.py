"""What a model is: its dimensions, config.json readers per model_type, exact parameter counts."""
