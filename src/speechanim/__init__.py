"""speechanim: speech-driven facial animation with temporal GANs (Vougioukas et al., BMVC 2018)."""

__version__ = "0.1.0"
