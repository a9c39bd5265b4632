"""The model kinds (models/protocols.py): each model satisfies exactly the protocols of its kind.

Every named model, the two models built around others (fusion, QA) and the
evaluation stand-ins (duck-typed models of the same contract) are checked
against every protocol, so a protocol that grows too loose (a classifier
taken for a detector) or too strict (a stand-in no longer recognised) fails.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import internvideo
from eval_standins import ColourClassifier, ColourCLIP, HashText
from internvideo.models import list_models
from internvideo.models.fusion import CMAFusion, FusionConfig
from internvideo.models.protocols import (
    Captioner, Detector, FusionModel, Localizer, MaskedVideoModel, TokenEncoder, VideoClassifier, VideoLanguageModel,
    VideoModel, saved_class_names,
)
from internvideo.models.qa import VideoQA, VideoQAConfig
from internvideo.tasks import common
from internvideo.tasks.common import WrongModelError

PROTOCOLS = [VideoModel, TokenEncoder, VideoClassifier, MaskedVideoModel, VideoLanguageModel, Captioner, FusionModel,
             Localizer, Detector]
CLASSIFIER = {VideoModel, TokenEncoder, VideoClassifier}
#: model class -> the protocols it satisfies (kinds overlap only where the models do)
KINDS = {
    "VideoMAEClassifier": CLASSIFIER,
    "VideoMAEDetector": CLASSIFIER | {Detector},
    "VideoMAEPretrain": {VideoModel, MaskedVideoModel},
    "InternVideoMM": {VideoModel, TokenEncoder, VideoLanguageModel, Captioner},
    "InternVideoMMClassifier": CLASSIFIER,
    "ActionLocalizer": {Localizer},
    "CMAFusion": {VideoModel, FusionModel},
    "VideoQA": {VideoModel},
    "ColourClassifier": CLASSIFIER,
    "ColourCLIP": {VideoModel, VideoLanguageModel},
    "HashText": {VideoLanguageModel},
}


def _models() -> dict[str, nn.Module]:
    with torch.device("meta"):
        models = {name: internvideo.create_model(name) for name in list_models()}
        mm = models["internvideo_mm_tiny"]
        models["fusion"] = CMAFusion(FusionConfig(num_classes=4, width=32, num_layers=1, num_heads=4),
                                     internvideo.create_model("videomae_tiny", num_classes=0), mm)
        models["qa"] = VideoQA(VideoQAConfig(answers=("a", "b"), width=32, heads=2, layers=1), backbone=mm)
    return models | {"colour_classifier": ColourClassifier(), "colour_clip": ColourCLIP(), "hash_text": HashText()}


MODELS = _models()


def test_every_model_has_a_kind():
    assert {type(m).__name__ for m in MODELS.values()} == set(KINDS)
    for name, model in MODELS.items():
        assert {p for p in PROTOCOLS if isinstance(model, p)} == KINDS[type(model).__name__], name


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_the_models_of_a_kind_satisfy_its_protocol_and_no_others_do(protocol):
    members = {name for name, m in MODELS.items() if isinstance(m, protocol)}
    expected = {name for name, m in MODELS.items() if protocol in KINDS[type(m).__name__]}
    assert members == expected
    assert members and members != set(MODELS)  # each protocol tells some models apart from others


def test_a_missing_member_is_another_kind():
    class NoScale(nn.Module):  # encodes both, but has no temperature: not a video-language model
        def encode_video(self, video):
            return video

        def encode_text(self, ids):
            return ids

    assert not isinstance(NoScale(), VideoLanguageModel)
    clip = ColourCLIP()
    del clip.logit_scale
    assert not isinstance(clip, VideoLanguageModel) and not common.is_multimodal(clip)
    with pytest.raises(WrongModelError, match="needs a video-language model"):
        common.require_multimodal(clip, "retrieval")


def test_the_task_helpers_ask_the_protocols():
    assert common.is_multimodal(MODELS["internvideo_mm_tiny"]) and common.is_multimodal(MODELS["hash_text"])
    assert not common.is_multimodal(MODELS["videomae_tiny"]) and not common.is_multimodal(MODELS["fusion"])
    with pytest.raises(WrongModelError, match="needs a classifier"):
        common.require_classifier(MODELS["internvideo_mm_tiny"], "recognition")
    common.require_classifier(MODELS["videomae_tiny"], "recognition")
    with pytest.raises(WrongModelError, match="has no input recipe"):
        common.input_recipe(MODELS["actionformer_small"])


def test_clip_embedding_follows_the_kind():
    torch.manual_seed(0)
    clf = internvideo.create_model("videomae_tiny").eval()
    pre = internvideo.create_model("videomae_tiny_pretrain").eval()
    r = clf.input_recipe()
    video = torch.randn(2, 3, r.num_frames, r.img_size, r.img_size)
    with torch.no_grad():
        torch.testing.assert_close(common.clip_embedding(clf, video),
                                   clf.forward_head(clf.forward_features(video), pre_logits=True))
        # a pretraining model: the mean of its encoder's tokens (its encoder has no head)
        torch.testing.assert_close(common.clip_embedding(pre, video), pre.encoder.forward_features(video).mean(1))
        with pytest.raises(WrongModelError, match="has no head"):
            common.clip_embedding(pre, video, "pre_logits")


def test_saved_class_names():
    with torch.device("meta"):
        model = internvideo.create_model("actionformer_small", num_classes=2, class_names=("jump", "run"))
    assert saved_class_names(model) == ("jump", "run")
    assert saved_class_names(MODELS["actionformer_small"]) is None  # saved none
    assert saved_class_names(MODELS["hash_text"]) is None  # a config without the field
