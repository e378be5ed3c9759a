"""End to end through torchdistill's own machinery: YAML loader, import_dependencies, get_distillation_box.

CE plus every GeoKT loss at layer1/2/3 of torchdistill's CIFAR ResNet-56 (instructor) and ResNet-20 (student),
randomly initialised with a fixed seed, on 8 FakeData images built with ``!import_call``; one training step on CPU.
"""

from __future__ import annotations

import torch
from torchdistill.common import yaml_util
from torchdistill.common.main_util import import_dependencies
from torchdistill.core.distillation import DistillationBox, get_distillation_box
from torchdistill.models.registry import get_model

import geokt_plugin

CONFIG = """
dependencies:
  - name: 'geokt_plugin'

datasets:
  fake/train: !import_call
    key: 'torchvision.datasets.FakeData'
    init:
      kwargs:
        size: 8
        image_size: [3, 32, 32]
        num_classes: 10
        random_offset: 0
        transform: !import_call
          key: 'torchvision.transforms.ToTensor'

models:
  teacher_model: {key: 'resnet56', kwargs: {num_classes: 10, pretrained: False}}
  student_model: {key: 'resnet20', kwargs: {num_classes: 10, pretrained: False}}

train:
  num_epochs: 1
  train_data_loader:
    dataset_id: 'fake/train'
    sampler:
      class_or_func: !import_get {key: 'torch.utils.data.SequentialSampler'}
      kwargs:
    kwargs: {batch_size: 4, num_workers: 0, drop_last: True}
  teacher:
    forward_proc: 'forward_batch_only'
    sequential: []
    forward_hook: {input: [], output: ['layer1', 'layer2', 'layer3']}
    wrapper:
    requires_grad: False
  student:
    forward_proc: 'forward_batch_only'
    sequential: []
    forward_hook: {input: [], output: ['layer1', 'layer2', 'layer3']}
    wrapper:
    requires_grad: True
  optimizer: {key: 'SGD', kwargs: {lr: 0.1, momentum: 0.9, weight_decay: 0.0001}}
  criterion:
    key: 'WeightedSumLoss'
    kwargs:
      sub_terms:
        ce:
          criterion: {key: 'CrossEntropyLoss', kwargs: {reduction: 'mean'}}
          criterion_wrapper:
            key: 'SimpleLossWrapper'
            kwargs:
              input: {is_from_teacher: False, module_path: '.', io: 'output'}
              target: {uses_label: True}
          weight: 1.0
        distance1:
          criterion:
            key: 'GeoKTDistanceLoss'
            kwargs: {student_module_path: 'layer1', teacher_module_path: 'layer1', neighbors: 8, max_points: 64}
          weight: 1.0
        distance2:
          criterion:
            key: 'GeoKTDistanceLoss'
            kwargs: {student_module_path: 'layer2', teacher_module_path: 'layer2', neighbors: 8}
          weight: 1.0
        distance3:
          criterion:
            key: 'GeoKTDistanceLoss'
            kwargs: {student_module_path: 'layer3', teacher_module_path: 'layer3', neighbors: null, scope: 'batch'}
          weight: 1.0
        kl1:
          criterion:
            key: 'GeoKTNeighborKLLoss'
            kwargs: {student_module_path: 'layer1', teacher_module_path: 'layer1', max_points: 64}
          weight: 1.0
        kl2:
          criterion:
            key: 'GeoKTNeighborKLLoss'
            kwargs: {student_module_path: 'layer2', teacher_module_path: 'layer2', bandwidth: 0.5}
          weight: 1.0
        kl3:
          criterion:
            key: 'GeoKTNeighborKLLoss'
            kwargs: {student_module_path: 'layer3', teacher_module_path: 'layer3', scope: 'batch'}
          weight: 1.0
        rank1:
          criterion:
            key: 'GeoKTNeighborRankLoss'
            kwargs: {student_module_path: 'layer1', teacher_module_path: 'layer1', max_points: 64}
          weight: 1.0
        rank2:
          criterion:
            key: 'GeoKTNeighborRankLoss'
            kwargs: {student_module_path: 'layer2', teacher_module_path: 'layer2', neighbors: 4, temperature: 0.2}
          weight: 1.0
        rank3:
          criterion:
            key: 'GeoKTNeighborRankLoss'
            kwargs: {student_module_path: 'layer3', teacher_module_path: 'layer3', reduction: 'sum'}
          weight: 0.25
"""

GEOKT_TERMS = {
    "distance1": geokt_plugin.GeoKTDistanceLoss, "distance2": geokt_plugin.GeoKTDistanceLoss,
    "distance3": geokt_plugin.GeoKTDistanceLoss, "kl1": geokt_plugin.GeoKTNeighborKLLoss,
    "kl2": geokt_plugin.GeoKTNeighborKLLoss, "kl3": geokt_plugin.GeoKTNeighborKLLoss,
    "rank1": geokt_plugin.GeoKTNeighborRankLoss, "rank2": geokt_plugin.GeoKTNeighborRankLoss,
    "rank3": geokt_plugin.GeoKTNeighborRankLoss,
}


def test_torchdistill_distillation_box_trains_one_step_with_every_geokt_loss(tmp_path):
    config_path = tmp_path / "geokt_resnet20_from_resnet56.yaml"
    config_path.write_text(CONFIG)
    config = yaml_util.load_yaml_file(str(config_path))
    import_dependencies(config.get("dependencies"))

    torch.manual_seed(0)
    models_config = config["models"]
    teacher = get_model(models_config["teacher_model"]["key"], **models_config["teacher_model"]["kwargs"])
    student = get_model(models_config["student_model"]["key"], **models_config["student_model"]["kwargs"])
    # torchdistill 1.1.5 never calls teacher.eval() (requires_grad: False only freezes parameters), so a frozen
    # instructor left in train mode would update its BatchNorm running statistics; a runner must set eval mode.
    teacher.eval()
    teacher_before = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.detach().clone() for k, v in student.named_parameters()}

    box = get_distillation_box(
        teacher, student, config["datasets"], config["train"], torch.device("cpu"),
        device_ids=None, distributed=False, lr_factor=1, accelerator=None,
    )
    try:
        assert isinstance(box, DistillationBox)
        terms = box.criterion.term_dict
        assert set(terms) == {"ce", *GEOKT_TERMS}
        for name, cls in GEOKT_TERMS.items():
            assert type(terms[name][0]) is cls, name
        assert "GeoKTNeighborRankLoss(student='layer3:output'" in str(box.criterion)  # torchdistill logs this

        # The criterion is an nn.Module called by the box: a forward hook sees the io_dict it receives.
        seen = {}
        handle = box.criterion.register_forward_hook(lambda module, args, out: seen.update(args=args, out=out))
        box.pre_epoch_process(epoch=0)
        sample_batch, targets, supp_dict = next(iter(box.train_data_loader))
        assert sample_batch.shape == (4, 3, 32, 32)
        torch.manual_seed(1)  # the max_points terms sample with the global generator
        loss = box.forward_process(sample_batch, targets, supp_dict)
        handle.remove()
        assert loss.shape == () and torch.isfinite(loss) and loss.requires_grad

        # Every GeoKT term sees the hooked maps and gives a finite value; the weighted sum is the box's loss.
        io_dict, _, labels = seen["args"]
        assert tuple(io_dict["student"]["layer1"]["output"].shape) == (4, 16, 32, 32)
        assert tuple(io_dict["teacher"]["layer3"]["output"].shape) == (4, 64, 8, 8)
        total = 0.0
        torch.manual_seed(1)  # same draws, same order: the terms run in sub_terms order
        for name, (term, weight) in terms.items():
            value = term(io_dict["student"], io_dict["teacher"], labels)
            assert value.shape == () and torch.isfinite(value), name
            total = total + weight * value.detach()
        torch.testing.assert_close(total, loss.detach())

        box.post_forward_process(loss=loss)
    finally:
        box.clean_modules()

    changed = [k for k, v in student.named_parameters() if not torch.equal(v.detach(), student_before[k])]
    assert len(changed) == len(student_before), "every student parameter gets a gradient and moves"
    for key, value in teacher.state_dict().items():  # the frozen instructor is untouched, buffers included
        assert torch.equal(value, teacher_before[key]), key
    assert all(p.grad is None for p in teacher.parameters())
