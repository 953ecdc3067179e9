"""The voices the local server offers: every system voice Inworld lists, each spoken by eSpeak NG.

The table is data: one row per voice, ``(name, language, gender, eSpeak voice, pitch,
description)``, in listing order: English first (the server's original nine voices, then the rest
alphabetically), then the other languages by code. Inworld's examples and docs name these voices
(``Dennis``, ``Sarah``, ``Hana``, ``Clive``, ``Jason`` ...), so a client written for the real
service runs against the local server with only the host changed.

How a row is spoken: the eSpeak voice is ``language+variant`` — the nearest accent eSpeak
has (``en-us``, ``en`` (British), ``en-gb-x-rp``, ``en-gb-scotland``, ``en-us-nyc``,
``en-029``, ``en-gb-x-gbcwmd`` for the Australian voices, ``cmn`` for Chinese ...) and a
variant of the voice's gender (``m1``–``m8``, ``f1``–``f5`` or a named one: ``robosoft`` for
the robotic ``Dominus``, ``whisperf`` for the whispery ``Celeste``, ``zac`` for the childlike
``Pixie``). ``pitch`` is eSpeak's relative pitch (0–100, 50 = the variant's own). No two voices
share both, so every name sounds different. Descriptions are short paraphrases.
"""

from __future__ import annotations

import attrs

__all__ = ["VOICES", "VoiceInfo"]


@attrs.frozen
class VoiceInfo:
    """One voice: its Inworld name and the eSpeak voice (and pitch) that speaks for it."""

    voice_id: str
    espeak_name: str
    language: str
    gender: str
    description: str
    pitch: int = 50


_Row = tuple[str, str, str, str, int, str]

# name, language, gender, eSpeak voice, pitch, description
_ROWS: tuple[_Row, ...] = (
    # English: the original voices keep the eSpeak voices they always had.
    ("Ashley", "en", "female", "en-us+f3", 50, "A warm, natural female voice"),
    ("Dennis", "en", "male", "en-us+m3", 50, "Middle-aged man with a smooth, calm voice"),
    ("Alex", "en", "male", "en-us+m1", 50, "Energetic and expressive mid-range male voice"),
    ("Edward", "en", "male", "en+m2", 50, "Male with an emphatic and streetwise tone"),
    ("Olivia", "en", "female", "en+f2", 50, "Young, British female with an upbeat tone"),
    ("Hades", "en", "male", "en-us+m7", 50, "Commanding and gruff male voice"),
    ("Julia", "en", "female", "en-us+f4", 50, "Quirky, high-pitched female voice"),
    ("Mark", "en", "male", "en-us+m4", 50, "Energetic man with a rapid-fire delivery"),
    ("Priya", "en", "female", "en-us+f5", 50, "Even-toned female voice with an Indian accent"),
    ("Abby", "en", "female", "en-us+f5", 85, "Bright, eager American girl"),
    ("Amina", "en", "female", "en-029+f2", 50, "Warm West African woman"),
    ("Anjali", "en", "female", "en+f4", 45, "Soothing, assured Indian woman"),
    ("Arjun", "en", "male", "en+m6", 55, "Smooth, enthusiastic Indian man"),
    ("Blake", "en", "male", "en-us+m8", 45, "Rich, intimate male voice"),
    ("Brian", "en", "male", "en-us+m2", 55, "Friendly, encouraging American man"),
    ("Callum", "en", "male", "en-gb-x-gbcwmd+m3", 50, "Laid-back Australian man"),
    ("Carter", "en", "male", "en-us+announcer", 55, "Mature, radio-announcer style man"),
    ("Celeste", "en", "female", "en-us+whisperf", 50, "Soft, whispery female voice"),
    ("Chloe", "en", "female", "en-us+steph", 55, "Thoughtful young woman"),
    ("Claire", "en", "female", "en+f1", 50, "Warm, gentle female voice"),
    ("Clive", "en", "male", "en+m3", 50, "Calm, cordial British man"),
    ("Craig", "en", "male", "en-gb-x-rp+m1", 40, "Older, refined British man"),
    ("Darlene", "en", "female", "en-us+f1", 45, "Comforting Southern woman"),
    ("Deborah", "en", "female", "en-gb-x-rp+f2", 50, "Gentle, elegant female voice"),
    ("Derek", "en", "male", "en-us+m6", 50, "Steady, professional American man"),
    ("Dominus", "en", "male", "en-us+robosoft", 35, "Deep, robotic, menacing male voice"),
    ("Elizabeth", "en", "female", "en+f3", 50, "Professional middle-aged woman"),
    ("Elliot", "en", "male", "en+m8", 40, "Deep, commanding male voice"),
    ("Ethan", "en", "male", "en-us+m5", 50, "Assured, precise male voice"),
    ("Evan", "en", "male", "en-us+Andy", 50, "Friendly, easygoing male voice"),
    ("Evelyn", "en", "female", "en-us+f2", 45, "Gentle, serene female voice"),
    ("Gareth", "en", "male", "en+Lee", 45, "Soothing, gentle male voice"),
    ("Graham", "en", "male", "en-gb-x-rp+m8", 50, "Authoritative British man"),
    ("Grant", "en", "male", "en-us+john", 50, "Calm, attentive, helpful man"),
    ("Hamish", "en", "male", "en-gb-x-gbcwmd+m1", 50, "Calm, trustworthy Australian man"),
    ("Hana", "en", "female", "en-us+f5", 65, "Bright, expressive young woman"),
    ("Hank", "en", "male", "en-us+Gene", 50, "Warm, laid-back Southern man"),
    ("Jake", "en", "male", "en-us+Jacky", 50, "Amiable, introspective man"),
    ("James", "en", "male", "en+m4", 60, "Vibrant, expressive male voice"),
    ("Jason", "en", "male", "en-us+Michael", 50, "Clear, engaging male voice"),
    ("Jessica", "en", "female", "en-us+f2", 60, "Encouraging, articulate American woman"),
    ("Kayla", "en", "female", "en-us+steph2", 60, "Enthusiastic young woman"),
    ("Kelsey", "en", "female", "en-us+f1", 60, "Warm, reassuring female voice"),
    ("Lauren", "en", "female", "en-us+f3", 60, "Confident, friendly American woman"),
    ("Liam", "en", "male", "en-gb-x-gbcwmd+m2", 60, "Upbeat Australian man"),
    ("Loretta", "en", "female", "en-us+aunty", 45, "Folksy Southern woman"),
    ("Luna", "en", "female", "en-us+belinda", 40, "Calm, relaxing female voice"),
    ("Malcolm", "en", "male", "en-gb-x-rp+m7", 45, "Authoritative, scheming man"),
    ("Marlene", "en", "female", "en-us+linda", 45, "Friendly, relaxed Southern woman"),
    ("Miranda", "en", "female", "en-gb-x-rp+f4", 40, "Serene, menacing woman"),
    ("Mortimer", "en", "male", "en+m7", 30, "Gravelly, menacing man"),
    ("Nate", "en", "male", "en-us+travis", 50, "Laid-back, engaging man"),
    ("Oliver", "en", "male", "en+m1", 50, "Soothing, precise male voice"),
    ("Pippa", "en", "female", "en-gb-x-gbcwmd+f2", 50, "Soothing Australian woman"),
    ("Pixie", "en", "female", "en-us+zac", 60, "Squeaky, childlike cartoon voice"),
    ("Ronald", "en", "male", "en-gb-x-rp+m3", 35, "Confident British man, deep and gravelly"),
    ("Rupert", "en", "male", "en-gb-x-rp+m6", 45, "Resonant, commanding British man"),
    ("Saanvi", "en", "female", "en+f5", 55, "Crisp, articulate Indian woman"),
    ("Sarah", "en", "female", "en-us+Annie", 55, "Fast-talking, curious young woman"),
    ("Sebastian", "en", "male", "en-gb-x-rp+m4", 40, "Steely, intimidating man"),
    ("Serena", "en", "female", "en+Andrea", 45, "Soft, nurturing female voice"),
    ("Shaun", "en", "male", "en+m5", 55, "Friendly, dynamic conversational man"),
    ("Simon", "en", "male", "en+ian", 55, "Articulate, insightful man"),
    ("Snik", "en", "male", "en+croak", 60, "Hoarse, cunning goblin"),
    ("Tessa", "en", "female", "en-gb-x-gbcwmd+f5", 55, "Upbeat Australian woman"),
    ("Theodore", "en", "male", "en+grandpa", 45, "Gravelly, time-worn male voice"),
    ("Timothy", "en", "male", "en-us+Reed", 55, "Lively, upbeat American man"),
    ("Tyler", "en", "male", "en-us+david", 50, "Authoritative, insightful man"),
    ("Veronica", "en", "female", "en-gb-x-rp+f3", 40, "Commanding, intimidating woman"),
    ("Victor", "en", "male", "en+victor", 35, "Ominous, sinister man"),
    ("Victoria", "en", "female", "en-gb-x-rp+f1", 50, "Silky, cunning woman"),
    ("Vinny", "en", "male", "en-us-nyc+m3", 50, "Gritty New York man"),
    ("Wendy", "en", "female", "en-gb-x-rp+f5", 45, "Posh, middle-aged British woman"),
    # The other languages.
    ("Nour", "ar", "female", "ar+f2", 50, "Polished, friendly Arabic woman"),
    ("Omar", "ar", "male", "ar+m3", 55, "Bright, confident Arabic man"),
    ("Johanna", "de", "female", "de+f1", 35, "Calm older German woman, low and smoky"),
    ("Josef", "de", "male", "de+m2", 50, "Articulate German announcer"),
    ("Diego", "es", "male", "es+m3", 50, "Soothing, gentle Spanish-speaking man"),
    ("Lupita", "es", "female", "es+f3", 50, "Vibrant Spanish-speaking young woman"),
    ("Miguel", "es", "male", "es-419+m1", 50, "Calm Spanish-speaking storyteller"),
    ("Rafael", "es", "male", "es+m8", 40, "Deep, composed Spanish-speaking man"),
    ("Alain", "fr", "male", "fr+m3", 50, "Smooth French-speaking man"),
    ("Hélène", "fr", "female", "fr+f3", 50, "Graceful French-speaking woman"),
    ("Mathieu", "fr", "male", "fr+m2", 55, "French man with a nasal voice"),
    ("Étienne", "fr", "male", "fr-be+m1", 55, "Calm young French man"),
    ("Oren", "he", "male", "he+m3", 50, "Steady Hebrew-speaking man"),
    ("Yael", "he", "female", "he+f2", 50, "Mid-range Hebrew-speaking woman"),
    ("Manoj", "hi", "male", "hi+m2", 50, "Clear, professional Hindi-speaking man"),
    ("Riya", "hi", "female", "hi+f3", 50, "Clear, polished Hindi-speaking woman"),
    ("Gianni", "it", "male", "it+m4", 45, "Deep, quick Italian man"),
    ("Orietta", "it", "female", "it+f1", 50, "Calm, soothing Italian woman"),
    ("Asuka", "ja", "female", "ja+f3", 60, "Friendly young Japanese woman"),
    ("Satoshi", "ja", "male", "ja+m3", 55, "Dramatic, energetic Japanese man"),
    ("Hyunwoo", "ko", "male", "ko+m1", 55, "Young Korean man"),
    ("Minji", "ko", "female", "ko+f5", 60, "Energetic young Korean woman"),
    ("Seojun", "ko", "male", "ko+m8", 45, "Clear, deep mature Korean man"),
    ("Yoona", "ko", "female", "ko+f2", 50, "Gentle, soothing Korean woman"),
    ("Erik", "nl", "male", "nl+m7", 40, "Weathered older Dutch man"),
    ("Katrien", "nl", "female", "nl+f3", 55, "Expressive Dutch woman"),
    ("Lennart", "nl", "male", "nl+m3", 50, "Confident, relaxed Dutch man"),
    ("Lore", "nl", "female", "nl+f2", 50, "Clear, calm Dutch woman"),
    ("Szymon", "pl", "male", "pl+m3", 50, "Warm, friendly Polish man"),
    ("Wojciech", "pl", "male", "pl+m6", 45, "Middle-aged Polish man"),
    ("Heitor", "pt", "male", "pt-br+m3", 50, "Composed Portuguese-speaking man"),
    ("Maitê", "pt", "female", "pt-br+f4", 45, "Middle-aged Portuguese-speaking woman"),
    ("Dmitry", "ru", "male", "ru+m7", 40, "Deep, gravelly Russian narrator"),
    ("Elena", "ru", "female", "ru+f2", 50, "Clear, neutral Russian woman"),
    ("Nikolai", "ru", "male", "ru+m8", 45, "Deep, theatrical Russian narrator"),
    ("Svetlana", "ru", "female", "ru+f5", 65, "Soft, high, breathy Russian woman"),
    ("Jing", "zh", "female", "cmn+f5", 60, "Energetic, fast-paced young Chinese woman"),
    ("Xiaoyin", "zh", "female", "cmn+f3", 65, "Sweet, gentle young Chinese woman"),
    ("Xinyi", "zh", "female", "cmn+f2", 50, "Neutral Chinese narrator"),
    ("Yichen", "zh", "male", "cmn+m1", 50, "Calm young Chinese man"),
)

#: Inworld voice name → :class:`VoiceInfo`, in listing order.
VOICES: dict[str, VoiceInfo] = {
    name: VoiceInfo(name, espeak, language, gender, description, pitch)
    for name, language, gender, espeak, pitch, description in _ROWS
}
