"""The assistant's system prompt: the same text in training, in the Modelfile and at inference. Short, because
every training sample carries it."""

SYSTEM_PROMPT = "You are Ben's Lab AI for the Jarvis-2v quantum phase lab."
