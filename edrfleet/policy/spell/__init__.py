"""Argument matchers that know how programs read their arguments (docs/policy.md, "Options
and paths"): ``option`` (getopt / getopt_long spellings of one option) and ``path`` (every
lexical spelling of one absolute path).  Each compiles to an automaton AST of
`edrfleet.policy.regex.parse`, so the kernel and ``policy test`` run the same DFA; each also
has a plain-Python reading (``*_holds``) that `edrfleet.policy.reference` uses as the oracle.
"""
