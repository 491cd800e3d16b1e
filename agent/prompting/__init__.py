"""Agent definition -> system prompt: the compiler and the domain-knowledge retrieval."""

from agent.prompting.compiler import (
    AgentDefinition,
    CompiledPrompt,
    Goal,
    Instruction,
    PromptCompiler,
)
from agent.prompting.retrieval import BM25Index, Hit, KnowledgeEntry

__all__ = [
    "AgentDefinition",
    "BM25Index",
    "CompiledPrompt",
    "Goal",
    "Hit",
    "Instruction",
    "KnowledgeEntry",
    "PromptCompiler",
]
