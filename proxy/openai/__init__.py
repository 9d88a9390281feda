"""The client-facing side: OpenAI request and response models, errors, prompts, tools, and the text a client sees."""
