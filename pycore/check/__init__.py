"""Checking an estimate against the user's own run: read what PyTorch or nvidia-smi printed
(parse), set it beside the estimate term by term and name the assumptions that would explain a gap
(compare), and write the case as a calibration record (record)."""
