"""The chat template: the Alpaca-style format SOLAR-10.7B-Instruct ships, as a Jinja chat template.

Rendered text of one exchange (system optional; every assistant turn ends with the EOS token)::

    ### System:
    {system}

    ### User:
    {user}

    ### Assistant:
    {assistant}</s>

The same template is saved with every tokenizer solar writes, so ``apply_chat_template`` on the
output checkpoint reproduces training-time prompts exactly.
"""

from __future__ import annotations

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '### System:\n' + message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### User:\n' + message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '### Assistant:\n' + message['content'] + eos_token + '\n\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
)
