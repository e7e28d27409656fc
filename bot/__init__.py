"""Conversation side: understanding, memory, conversation state and channel rendering."""
