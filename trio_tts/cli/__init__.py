"""The ``trio-tts`` command line: ``speak``, ``serve``, ``voices`` (and ``python -m
trio_tts.cli.demo``). :func:`main` is the console-script entry point."""

from .main import SpeakResult as SpeakResult
from .main import main as main
from .main import rime_urls as rime_urls
from .main import service_urls as service_urls
from .main import speak as speak
from .main import split_sentences as split_sentences
