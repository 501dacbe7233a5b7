"""Argument types shared by the command-line tools."""
import argparse


def positive_int(text: str) -> int:
    """argparse type of an image side: an integer >= 1 (0 or less would fail deep inside
    the model with a traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'an image side must be >= 1, got {value}')
    return value
