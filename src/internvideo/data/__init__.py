"""Video data: decoding, sampling, transforms, dataset formats, synthetic world."""
