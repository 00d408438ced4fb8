"""Enforcement that outlives the agent process: the raw ``bpf(2)`` calls (:mod:`.bpfsys`), the
pinned state in bpffs (:mod:`.pins`), adopting it at start (:mod:`.adopt`) and ending it
(:mod:`.disarm`, the one way to).  Standard library only, apart from adopt's use of Engine."""
