"""qrm, the Quantum Resource Manager: a GitOps reconciler for Quantum-framework apps."""

__version__ = "0.1.0"
