"""The Reverb replay server (``replay.server``) and its command line (``robofume replay serve``
and ``robofume replay info``).

Its clients (the actor's episode writer, the learner's sampler, the weights client) and the
tables' contract they share with the server live in the library,
:mod:`robofume.replay_client`, so the actor and the learner never import this package.
"""
