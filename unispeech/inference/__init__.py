"""After fine-tuning: long-audio decoding, timestamps, subtitles, forced alignment, beam search, ONNX."""
