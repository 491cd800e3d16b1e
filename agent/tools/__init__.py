"""The agent's tools: store PCs over SSH (allow-listed commands only), the StoreMaster and
ticket APIs, and the registry that exposes them to the LLM as JSON-schema functions."""
