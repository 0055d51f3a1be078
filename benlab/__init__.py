"""ben-lab: a quantum-phase lab, training data from it, and a LoRA fine-tuned model that knows the lab."""

__version__ = "2.0.0"
