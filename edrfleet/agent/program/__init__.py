"""The BPF program's parts the engine (edrfleet/agent/engine.py) is made of: how it is built,
its policy slots, its event reader."""
