"""The pure core: manifest models, cross-checks, desired/recorded/live state, the allocator, the plan,
renderings of configs and reports, health rules, components, assertions and test generation.

No I/O and no edge technology (import-linter forbids it): every function here is a function of its
arguments, so the plan can be tested and property-checked without a disk, a network or a registry.
"""
