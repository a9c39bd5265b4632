"""Video data: decoding, sampling, transforms, dataset formats, synthetic world.

The names most code needs are re-exported here::

    from internvideo.data import probe, read_frames, VideoError
    from internvideo.data import VideoClassificationDataset, VideoTextDataset, View, collate_videos, SkipLog
    from internvideo.data import DenseSampler, SegmentSampler, build_train_transform, make_world
    from internvideo.data import recipe_view  # a model's input recipe -> sampler + transform
    from internvideo.data import DecodedVideos  # small video sets decoded once, kept in memory

See ``docs/data.md`` for the formats and the design.
"""

from .ava import read_ava_groundtruth
from .datasets import (
    AnnotationError, AVABox, ClassificationSample, LocalizationVideo, QASample, Segment, SkipLog, SkipSummary,
    VideoClassificationDataset, VideoDataset, VideoTextDataset, VideoTextSample, View, collate_videos,
    read_activitynet, read_classes, read_classification_list, read_msrvtt, read_qa, read_video_text,
    recipe_view, write_video_text,
)
from .memory import DecodedVideos, keep_decoded
from .openset import DEAR_LISTS, openset_test_samples, read_dear_list
from .retrieval_sets import read_activitynet_captions, read_didemo, read_lsmdc, read_msvd, read_vatex
from .sampling import (
    DenseSampler, FpsSampler, Sampler, SegmentSampler, UniformSampler, dense_indices, fps_indices, segment_indices,
    uniform_indices,
)
from .synthetic import ACTIONS, HELD_OUT_CLASSES, World, make_world
from .transforms import (
    CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, EvalTransformConfig, MixupCutmix, TrainTransformConfig,
    build_eval_transform, build_train_transform,
)
from .video import VideoError, VideoInfo, probe, read_frames, write_video

__all__ = [
    "probe", "read_frames", "write_video", "VideoError", "VideoInfo",
    "Sampler", "DenseSampler", "SegmentSampler", "UniformSampler", "FpsSampler",
    "dense_indices", "segment_indices", "uniform_indices", "fps_indices",
    "IMAGENET_MEAN", "IMAGENET_STD", "CLIP_MEAN", "CLIP_STD", "TrainTransformConfig", "EvalTransformConfig",
    "build_train_transform", "build_eval_transform", "MixupCutmix",
    "AnnotationError", "ClassificationSample", "VideoTextSample", "Segment", "LocalizationVideo", "AVABox", "QASample",
    "read_classification_list", "read_classes", "read_video_text", "write_video_text", "read_msrvtt",
    "read_activitynet", "read_ava_groundtruth", "read_qa",
    "read_msvd", "read_lsmdc", "read_didemo", "read_activitynet_captions", "read_vatex",
    "View", "recipe_view", "VideoDataset", "DecodedVideos", "keep_decoded", "VideoClassificationDataset", "VideoTextDataset",
    "collate_videos", "SkipLog",
    "SkipSummary",
    "DEAR_LISTS", "read_dear_list", "openset_test_samples",
    "make_world", "World", "ACTIONS", "HELD_OUT_CLASSES",
]
