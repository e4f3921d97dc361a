"""cakd: a reproducible companion to the report *Confidence Aware Ensemble Knowledge Distillation*."""
import warnings

from tqdm import TqdmWarning

# huggingface_hub (imported by timm) imports tqdm.auto, which warns inside a kernel without ipywidgets; cakd
# draws no widgets in a kernel, so the warning says nothing to our readers.
warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
