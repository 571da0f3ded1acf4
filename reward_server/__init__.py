"""The reward model (a success classifier) and its batched gRPC server.

Model (``reward_server.backends``; the interface in ``reward_server.model``)::

    model = load_reward_model("runs/sim-cpu/reward")          # dir with model.pt, or the file
    probs = model.score(images_uint8_NHW3, questions)          # P(yes), float32 (N,)
    model.version, model.threshold, model.question_for("vase_forward")

Backends, one module each behind ``backends.make_reward_model``: ``embedded``
(EfficientNet-Lite0 + MiniLM + fusion head, offline default; ``cnn``: same head, encoder from
scratch) and ``vlm`` (transformers image-text-to-text + LoRA).

Fine-tuning and evaluation: ``robofume reward finetune`` / ``robofume reward evaluate``
(``reward_server.finetune``, ``reward_server.evaluate``).

Serving: ``robofume reward serve`` (one replica), ``reward_server.server.RewardServer`` /
``start_server_thread`` (in-process), ``reward_server.ray_replicas.launch_replicas`` (N replicas
as Ray actors). Clients use ``robofume.reward_client.RewardClient``.
"""
