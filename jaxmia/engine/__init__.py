"""The shadow-model engine: k models trained at once (``jax.vmap`` over models, ``jax.jit``
over whole epochs, sharded over devices), pools of them on disk, several hosts."""
