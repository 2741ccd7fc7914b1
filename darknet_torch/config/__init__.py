"""Parsing of Darknet's text files: .cfg network definitions, .data, .names and image lists."""
from darknet_torch.config.cfg_parser import RawSection, parse_cfg_text, read_cfg
from darknet_torch.config.sections import Section, type_sections


def load_cfg(path) -> list[Section]:
    """Read and type a .cfg file: the first section is [net], the rest are layers."""
    return type_sections(read_cfg(path))


__all__ = ["RawSection", "Section", "load_cfg", "parse_cfg_text", "read_cfg", "type_sections"]
