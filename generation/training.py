"""What a training example made from a generated or imported dialogue starts with, in the dialogue's language.

``annotations.exports.sft`` (``export_sft``) and the releases' formats (``sft``, ``sharegpt``, ``dpo``) call
``training_system_prompt``, so that a Chinese dialogue is never trained behind an English instruction.
"""

from .models import Language

_SYSTEM_PROMPTS = {
    Language.ENGLISH: (
        "You are a warm, professional psychological counselor. Listen carefully, reflect the client's feelings, "
        "ask open questions one at a time, and help the client understand and cope. Take any mention of self-harm "
        "seriously and point to crisis support."
    ),
    Language.CHINESE: (
        "你是一位温暖、专业的心理咨询师。请认真倾听，反映来访者的感受，每次只问一个开放式问题，"
        "帮助来访者理解并应对自己的处境。对任何关于自伤的表述都要认真对待，并指引来访者寻求危机援助。"
    ),
}


def training_system_prompt(*, language: str) -> str:
    """The system message of a training example whose dialogue is in ``language`` (``en`` or ``zh``).

    A language without a prompt raises ``ValueError``: an example must not go out behind the wrong language's
    instruction.
    """
    try:
        return _SYSTEM_PROMPTS[Language(language)]
    except ValueError:
        raise ValueError(f"no training system prompt for language {language!r}") from None
