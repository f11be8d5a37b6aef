# Runtime shared by every segmentation config: registers the RoPE backbones into mmseg, iteration-based logging.
custom_imports = dict(imports=['ropevit_dense.adapters.mmseg'], allow_failed_imports=False)

default_scope = 'mmseg'

# cudnn.benchmark off as in both originals (BEiT's --deterministic, detectron2's CUDNN_BENCHMARK=False)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False

# `mim test mmseg <config> --checkpoint <ckpt> --tta` wraps the model in this and runs `tta_pipeline`.
tta_model = dict(type='SegTTAModel')
