"""LLM engines: llama.cpp (CPU) and vLLM (GPU), plus the tool-call helpers they share.

Import the engine modules directly; this package imports nothing heavy so that the
helpers work in every environment.
"""
