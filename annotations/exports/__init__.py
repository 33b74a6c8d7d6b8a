"""Exports of approved data: dialogues as chat-format JSONL for SFT (``sft``), questions for GRPO and SFT
(``questions``).
"""
