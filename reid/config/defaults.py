"""Every configuration key of reid, with its default and a one-line comment.

Keys not defined here are rejected when a YAML file or a command-line override names them. Where a default
comes from a paper or a peer toolkit, the source is written next to it. "GPW paper" is Wang et al., "A Unified
View of Deep Metric Learning via Gradient Analysis" (ICLR 2019 submission), whose General Pair Weighting view
the MS loss paper (Wang et al., CVPR 2019) published.
"""
from .node import CfgNode as CN

_C = CN()
DEFAULTS = _C  # the public name: get_cfg() clones it (_C is the yacs convention the lines below write to)

_C.OUTPUT_DIR = "output"  # where checkpoints, logs, metrics.json and plots are written
_C.SEED = 0  # seeds Python, NumPy, torch and the sampler; a negative value draws a fresh seed
_C.DETERMINISTIC = False  # deterministic algorithms: exact resume (GPU: unless torch warns an op has none)

# ---------------------------------------------------------------------------------------------------------------
_C.MODEL = CN()
_C.MODEL.DEVICE = "auto"  # "cpu", "cuda", "cuda:N" or "auto" (cuda when available)
_C.MODEL.META_ARCHITECTURE = "Baseline"  # registered in reid.modeling.META_ARCH_REGISTRY: Baseline, MGN
_C.MODEL.WEIGHTS = ""  # checkpoint to load before training/testing (classifier weights are ignored)
_C.MODEL.CHANNELS_LAST = False  # channels-last memory layout of model and inputs (faster convolutions with AMP on GPUs)
_C.MODEL.COMPILE = False  # torch.compile the training forward (slow first iterations; evaluation runs eagerly)
_C.MODEL.SYNC_BN = False  # under DDP, SyncBatchNorm: BN statistics over the whole batch of all GPUs (CUDA only)
# Modules (dotted names: "backbone", "head.reduction", "branches") not updated and with norm layers in eval mode for the
# first SOLVER.FREEZE_ITERS iterations / FREEZE_EPOCHS epochs (fast-reid MODEL.FREEZE_LAYERS + its LayerFreeze hook;
# torchreid's fixbase_epoch, which freezes every module but its open_layers).
_C.MODEL.FREEZE_LAYERS = []  # frozen modules (fast-reid SBS: the backbone)
_C.MODEL.FREEZE_PARAMS_ONLY = []  # not updated either, but left in train mode (fast-reid MGN: its regexes hit the heads)

_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "resnet"  # BACKBONE_REGISTRY: resnet, osnet_x1_0 ... osnet_x0_25, osnet_ain_x1_0, ...
_C.MODEL.BACKBONE.DEPTH = 50  # ResNet depth: 18, 34, 50, 101, 152 (torchvision definitions)
_C.MODEL.BACKBONE.LAYERS = []  # blocks per stage, overriding DEPTH's (e.g. [1, 1, 1, 1] for a tiny CPU model)
_C.MODEL.BACKBONE.WIDTH = 64  # channels of the stem / first stage (torchvision: 64); smaller = faster
_C.MODEL.BACKBONE.LAST_STRIDE = 1  # stride of the last stage: 1 doubles the final map (bag of tricks)
_C.MODEL.BACKBONE.PRETRAIN = False  # initialise from ImageNet weights (torchvision download or PRETRAIN_PATH)
_C.MODEL.BACKBONE.PRETRAIN_PATH = ""  # local ImageNet state dict in its publisher's format; empty = download
_C.MODEL.BACKBONE.WITH_IBN = False  # ResNet with IBN-Net instance + batch norm (Pan et al. 2018; fast-reid's key)
_C.MODEL.BACKBONE.IBN_TYPE = "a"  # "a": IN in half of bn1, layer1-3; "b": IN in the stem and after layer1-2 (Pan)
_C.MODEL.BACKBONE.WITH_NL = False  # non-local blocks (Wang et al. 2018) where fast-reid puts them (AGW / SBS)
_C.MODEL.BACKBONE.NL_INTER_CHANNELS = 1  # non-local embedding width: 1 as fast-reid builds it; 0 = half (Wang et al.)
_C.MODEL.BACKBONE.MAXPOOL_CEIL = False  # stem max-pool unpadded, ceil mode (fast-reid); False: padding 1 (torchvision)

_C.MODEL.HEADS = CN()
_C.MODEL.HEADS.POOL = "avg"  # global pooling: "avg", "max" or "gem"
_C.MODEL.HEADS.GEM_P = 3.0  # initial GeM exponent (Radenovic et al. 2018: 3)
_C.MODEL.HEADS.GEM_LEARN = True  # learnable GeM exponent (fast-reid's GeneralizedMeanPoolingP); False: fixed (AGW)
_C.MODEL.HEADS.NECK = "bnneck"  # "bnneck" (BN before the classifier, bag of tricks) or "none"
_C.MODEL.HEADS.EMBEDDING_DIM = 0  # >0: a REDUCTION to this size after pooling; 0: backbone channels (MGN: 256, paper)
_C.MODEL.HEADS.REDUCTION = "conv_bn_relu"  # conv_bn_relu (MGN), conv (fast-reid), linear_bn_relu (torchreid), linear
_C.MODEL.HEADS.NECK_FEAT = "before"  # feature the pair losses see: "before" / "after" the neck (fast-reid; SBS: after)
_C.MODEL.HEADS.TEST_FEAT = "after"  # test embedding "after" the neck (bag of tricks) or "before" (BoT TEST.NECK_FEAT)
_C.MODEL.HEADS.NUM_CLASSES = 0  # 0 = number of training identities, filled in from the dataset
_C.MODEL.HEADS.CLS_LAYER = "circle"  # classifier: "linear", "circle" (class-level Circle) or "cosface"
# Class-level Circle on re-ID, scale 128 / m 0.25: Circle loss paper (Sun et al. 2020, Sec. 4.1).
_C.MODEL.HEADS.SCALE = 128.0  # gamma of class-level Circle / s of CosFace
_C.MODEL.HEADS.MARGIN = 0.25  # m of class-level Circle / CosFace (CosFace paper: 0.35)
_C.MODEL.HEADS.CLS_INIT_STD = 0.0  # >0: classifier weights from N(0, std^2) (fast-reid, torchreid: 0.01); 0: its own

_C.MODEL.MGN = CN()
_C.MODEL.MGN.GLOBAL_STRIDE = 2  # layer4 stride of the global branch: 2 (MGN paper) or 1 (fast-reid)
_C.MODEL.MGN.CLASSIFIER = "heads"  # "heads": one per feature (MGN paper); "concat": one on all 8 (Circle loss Sec. 4.1)
_C.MODEL.MGN.PAIR_FEATURES = "global"  # pair losses on the 3 global features (MGN paper); "global_and_stripes" (fast-reid)

# Transformers (issue 25). ViT as TransReID builds it (He et al., ICCV 2021); its sizes also give CLIP's ViT.
_C.MODEL.VIT = CN()
_C.MODEL.VIT.EMBED_DIM = 768  # token width (ViT-B/16: 768; DeiT-S: 384)
_C.MODEL.VIT.DEPTH = 12  # transformer blocks (ViT-B/16: 12)
_C.MODEL.VIT.NUM_HEADS = 12  # attention heads (ViT-B/16: 12)
_C.MODEL.VIT.MLP_RATIO = 4.0  # MLP hidden width / EMBED_DIM (ViT: 4)
_C.MODEL.VIT.PATCH_SIZE = 16  # patch side in pixels (ViT-B/16)
_C.MODEL.VIT.STRIDE = [16, 16]  # patch stride (rows, cols): < PATCH_SIZE overlaps patches (TransReID: [12, 12])
_C.MODEL.VIT.DROP_PATH = 0.1  # stochastic depth of the last block, rising linearly from 0 (TransReID: 0.1)
_C.MODEL.VIT.SIE_CAMERAS = 0  # cameras of the SIE table (TransReID; > 1 enables it: Market 6, MSMT17 15)
_C.MODEL.VIT.SIE_VIEWS = 0  # viewpoints of the SIE table (TransReID's vehicle sets; 0 = none)
_C.MODEL.VIT.SIE_COEF = 3.0  # SIE coefficient lambda (TransReID: 3.0; CLIP-ReID: 1.0)

# TransReID's jigsaw patch module (meta-architecture TransReID).
_C.MODEL.JPM = CN()
_C.MODEL.JPM.PARTS = 4  # local features K (TransReID's DEVIDE_LENGTH: 4)
_C.MODEL.JPM.SHIFT = 5  # patches shifted before the shuffle (TransReID's SHIFT_NUM: 5)
_C.MODEL.JPM.GROUPS = 2  # shuffle groups (TransReID's SHUFFLE_GROUP: 2)
_C.MODEL.JPM.REARRANGE = True  # shift and shuffle the patches (TransReID's RE_ARRANGE: True)

_C.MODEL.CLIP = CN()
_C.MODEL.CLIP.PROJ_DIM = 0  # CLIP image projection width; 0 = CLIP's (ViT-B/16: 512, RN50: 1024)

# Swin Transformer (Liu et al., ICCV 2021) as SOLIDER-REID uses it (Chen et al., CVPR 2023); defaults: Swin-B.
_C.MODEL.SWIN = CN()
_C.MODEL.SWIN.EMBED_DIM = 128  # first stage width (Swin-T/S: 96, Swin-B: 128)
_C.MODEL.SWIN.DEPTHS = [2, 2, 18, 2]  # blocks per stage (Swin-T: [2, 2, 6, 2]; Swin-S/B: [2, 2, 18, 2])
_C.MODEL.SWIN.NUM_HEADS = [4, 8, 16, 32]  # heads per stage (Swin-T/S: [3, 6, 12, 24]; Swin-B: [4, 8, 16, 32])
_C.MODEL.SWIN.WINDOW = 7  # attention window side (Swin: 7)
_C.MODEL.SWIN.DROP_PATH = 0.1  # stochastic depth of the last block (SOLIDER-REID: 0.1)
_C.MODEL.SWIN.SEMANTIC_WEIGHT = 0.2  # SOLIDER's lambda (SOLIDER-REID's runs: 0.2); < 0: no semantic modulation

_C.MODEL.LOSSES = CN()
_C.MODEL.LOSSES.NAME = ["CrossEntropyLoss", "PairwiseCircleLoss"]  # registered in LOSS_REGISTRY; weighted sum
# Under DDP, pair losses on all GPUs' features and labels, gathered with gradients (the all-gather of SimCLR-style
# contrastive training): the loss of the whole IMS_PER_BATCH batch whatever the number of GPUs.
_C.MODEL.LOSSES.GATHER_FEATURES = True  # False: each GPU's pair losses see only its IMS_PER_BATCH / GPUs images

_C.MODEL.LOSSES.CE = CN()
_C.MODEL.LOSSES.CE.EPSILON = 0.1  # label smoothing (bag of tricks, Luo et al. 2019)
_C.MODEL.LOSSES.CE.SMOOTHING = "uniform"  # EPSILON over all C classes (Szegedy et al., torchreid); "others": C-1 (fast-reid)
_C.MODEL.LOSSES.CE.WEIGHT = 1.0  # weight in the total loss

_C.MODEL.LOSSES.CIRCLE = CN()
_C.MODEL.LOSSES.CIRCLE.MARGIN = 0.25  # m, relaxation (Circle loss paper, re-ID setting)
_C.MODEL.LOSSES.CIRCLE.GAMMA = 128.0  # scale (Circle loss paper, re-ID setting)
_C.MODEL.LOSSES.CIRCLE.WEIGHT = 1.0  # weight in the total loss
_C.MODEL.LOSSES.CIRCLE.MINER = ""  # pair miner in MINER_REGISTRY ("" = all pairs, "MultiSimilarityMiner", ...)

# Multi-Similarity (Wang et al., CVPR 2019, Sec. 5.1; = GPW paper Sec. 6: alpha 2, beta 50, lambda 0.5, epsilon 0.1).
_C.MODEL.LOSSES.MS = CN()
_C.MODEL.LOSSES.MS.ALPHA = 2.0  # positive scale alpha (MS loss paper)
_C.MODEL.LOSSES.MS.BETA = 50.0  # negative scale beta (MS loss paper)
_C.MODEL.LOSSES.MS.BASE = 0.5  # similarity threshold lambda (MS loss paper)
_C.MODEL.LOSSES.MS.EPSILON = 0.1  # mining margin epsilon, also of MINER "MultiSimilarityMiner" (MS loss paper)
_C.MODEL.LOSSES.MS.MINE = True  # False: weighting only, no mining (the GPW paper's "RAW" ablation)
_C.MODEL.LOSSES.MS.WEIGHT = 1.0  # weight in the total loss

# Batch-hard triplet (Hermans et al. 2017) with the bag-of-tricks settings (Luo et al. 2019).
_C.MODEL.LOSSES.TRIPLET = CN()
_C.MODEL.LOSSES.TRIPLET.MARGIN = 0.3  # hinge margin on Euclidean distance (bag of tricks, Luo et al. 2019)
_C.MODEL.LOSSES.TRIPLET.SOFT_MARGIN = False  # log(1 + exp(d_ap - d_an)) instead of the hinge (Hermans et al. 2017)
_C.MODEL.LOSSES.TRIPLET.NORM_FEAT = False  # L2-normalise features first (bag of tricks: False, raw features)
_C.MODEL.LOSSES.TRIPLET.WEIGHTING = "hardest"  # batch-hard (Hermans et al.); "softmax": AGW's (Ye et al. 2021; fast-reid)
_C.MODEL.LOSSES.TRIPLET.WEIGHT = 1.0  # weight in the total loss

# Contrastive on cosine similarity, GPW paper eq. 5: positives (1 - s), negatives [s - lambda]_+.
_C.MODEL.LOSSES.CONTRASTIVE = CN()
_C.MODEL.LOSSES.CONTRASTIVE.MARGIN = 0.5  # lambda (GPW paper: none; its authors' XBM, Wang et al. 2020: 0.5)
_C.MODEL.LOSSES.CONTRASTIVE.MINER = ""  # pair miner in MINER_REGISTRY ("" = all pairs)
_C.MODEL.LOSSES.CONTRASTIVE.WEIGHT = 1.0  # weight in the total loss

# Lifted structure, GPW paper eq. 9 (generalised form of Oh Song et al. 2016, Hermans et al. 2017).
_C.MODEL.LOSSES.LIFTED = CN()
_C.MODEL.LOSSES.LIFTED.MARGIN = 1.0  # lambda in exp(lambda + s_n) (Oh Song et al. 2016: alpha = 1)
_C.MODEL.LOSSES.LIFTED.MINER = ""  # pair miner in MINER_REGISTRY ("" = all pairs)
_C.MODEL.LOSSES.LIFTED.WEIGHT = 1.0  # weight in the total loss

# Binomial deviance, GPW paper eq. 12 (Yi et al. 2014: alpha 2, threshold 0.5, negative cost 25 -> beta 50).
_C.MODEL.LOSSES.BINOMIAL = CN()
_C.MODEL.LOSSES.BINOMIAL.ALPHA = 2.0  # positive sharpness (GPW paper Sec. 6; Yi et al. 2014)
_C.MODEL.LOSSES.BINOMIAL.BETA = 50.0  # negative sharpness (GPW paper Sec. 6; Yi et al.'s alpha * C = 2 * 25)
_C.MODEL.LOSSES.BINOMIAL.BASE = 0.5  # similarity threshold lambda (GPW paper Sec. 6; Yi et al. 2014's beta)
_C.MODEL.LOSSES.BINOMIAL.MINER = ""  # "" = all pairs; "MultiSimilarityMiner" = the GPW paper's Binomial+VTHM
_C.MODEL.LOSSES.BINOMIAL.WEIGHT = 1.0  # weight in the total loss

# ---------------------------------------------------------------------------------------------------------------
_C.INPUT = CN()
_C.INPUT.SIZE_TRAIN = [256, 128]  # (height, width) of training images
_C.INPUT.SIZE_TEST = [256, 128]  # (height, width) of test images
_C.INPUT.FLIP_PROB = 0.5  # probability of a random horizontal flip
_C.INPUT.PADDING = 10  # zero padding before the random crop back to SIZE_TRAIN; 0 disables pad + crop
_C.INPUT.REA = CN()
_C.INPUT.REA.ENABLED = True  # random erasing (Zhong et al. 2020)
_C.INPUT.REA.PROB = 0.5  # probability of erasing one rectangle
_C.INPUT.REA.FILL = "random"  # erased values N(0, 1) (Zhong et al. 2020, torchvision); "mean": mean pixel (fast-reid)
_C.INPUT.AUTOAUG = CN()
_C.INPUT.AUTOAUG.ENABLED = False  # AutoAugment's ImageNet policy (Cubuk et al. 2019) before the resize (fast-reid SBS)
_C.INPUT.AUTOAUG.PROB = 0.1  # probability of applying it to an image (fast-reid Base-SBS.yml)
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]  # RGB mean in [0, 1] (ImageNet)
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]  # RGB std in [0, 1] (ImageNet)
_C.INPUT.INTERPOLATION = "bicubic"  # resize filter: "bicubic" (fast-reid) or "bilinear" (torchvision default)
_C.INPUT.INTERPOLATION_TRAIN = ""  # training images' resize filter; "" = INTERPOLATION (TransReID: bicubic)

# ---------------------------------------------------------------------------------------------------------------
_C.DATASETS = CN()
_C.DATASETS.ROOT = "datasets"  # folder holding Market-1501-v15.09.15/, MSMT17_V1|V2/, synthetic/
_C.DATASETS.NAMES = ["Market1501"]  # training sets (registered in DATASET_REGISTRY); several are merged
_C.DATASETS.TESTS = ["Market1501"]  # test sets, each evaluated on its own query/gallery split
_C.DATASETS.SKIP_UNREADABLE = False  # skip (and count, and report) images that cannot be decoded
_C.DATASETS.KEEP_JUNK = False  # keep pid -1 query/gallery images (the evaluator ignores them; plots grey them)

_C.DATASETS.MSMT17 = CN()
_C.DATASETS.MSMT17.WITH_VAL = True  # train on list_train + list_val (32,621 images); False: list_train (fast-reid, torchreid)

_C.DATASETS.SYNTHETIC = CN()
_C.DATASETS.SYNTHETIC.NUM_TRAIN_IDS = 100  # identities in bounding_box_train
_C.DATASETS.SYNTHETIC.NUM_TEST_IDS = 100  # identities in query + bounding_box_test
_C.DATASETS.SYNTHETIC.NUM_CAMERAS = 4  # cameras, each with its own light, colour cast, background, viewpoint
_C.DATASETS.SYNTHETIC.IMAGES_PER_ID = 12  # images drawn per identity (spread over cameras)
_C.DATASETS.SYNTHETIC.NUM_DISTRACTORS = 50  # gallery images of pid 0000 (never a match)
_C.DATASETS.SYNTHETIC.NUM_JUNK = 20  # gallery images of pid -1 (ignored by the protocol)
_C.DATASETS.SYNTHETIC.IMAGE_SIZE = [128, 64]  # (height, width) written to disk (Market-1501: 128 x 64)
_C.DATASETS.SYNTHETIC.SEED = 0  # generation seed: the same seed gives the same files
_C.DATASETS.SYNTHETIC.DIFFICULTY = 0.5  # 0..1: camera colour/scale/viewpoint shifts, blur, noise, pose, occlusion
_C.DATASETS.SYNTHETIC.LOOKALIKE = 0.3  # 0..1: share of identities wearing an earlier identity's colours

# Protocols of the standard datasets (datasets/README.md).
_C.DATASETS.SPLIT_ID = 0  # split of a multi-split protocol (VIPeR, GRID, CUHK01, CUHK03 classic...); torchreid split_id
_C.DATASETS.SPLIT_SEED = 0  # seed of the random splits drawn without a peer's splits.json, and of VehicleID's galleries
_C.DATASETS.MARKET1501 = CN()
_C.DATASETS.MARKET1501.DISTRACTORS_500K = False  # images/ of Market-1501+500k (Zheng 2015) into the gallery; torchreid
_C.DATASETS.CUHK03 = CN()
_C.DATASETS.CUHK03.LABELED = False  # hand-labelled boxes, not detected ones (Li et al. CVPR 2014); torchreid
_C.DATASETS.CUHK03.CLASSIC_SPLIT = False  # 20 splits of 100 test ids (Li et al. 2014), not 767/700 (Zhong et al. 2017)
_C.DATASETS.VEHICLEID = CN()
_C.DATASETS.VEHICLEID.TEST_SIZE = 800  # test_list_<N>.txt: 800, 1600 or 2400 ids (Liu et al. CVPR 2016); fast-reid
_C.DATASETS.VEHICLEID.REPEATS = 10  # random one-image-per-id galleries drawn, metrics averaged (Liu et al. 2016)
_C.DATASETS.VERIWILD = CN()
_C.DATASETS.VERIWILD.TEST_SIZE = 3000  # test_<N>.txt: 3000, 5000 or 10000 ids (Lou et al. CVPR 2019); fast-reid

# ---------------------------------------------------------------------------------------------------------------
_C.DATALOADER = CN()
_C.DATALOADER.SAMPLER = "identity"  # "identity" (P x K batches), "naive_identity" (fast-reid's P x K) or "random"
_C.DATALOADER.NUM_INSTANCE = 4  # K images per identity in a batch (P = IMS_PER_BATCH / K)
_C.DATALOADER.NUM_WORKERS = 4  # loader worker processes (0 = load in the main process); decode threads of "gpu"
_C.DATALOADER.PIPELINE = "workers"  # "workers": decode + CPU transforms per image; "gpu": decode once, augment on GPU
_C.DATALOADER.CACHE_SIZE = []  # (height, width) kept in the "gpu" cache; [] = INPUT.SIZE_TRAIN, else resized per batch
_C.DATALOADER.CACHE_RAM_GB = 32.0  # "gpu" cache held in RAM up to this size, else a memory-mapped file in CACHE_DIR
_C.DATALOADER.CACHE_DIR = ""  # memory-mapped caches (reused by later runs on the same images); "" = OUTPUT_DIR/cache
_C.DATALOADER.CACHE_DEVICE_GB = -1.0  # "gpu" cache onto the GPU up to this size; -1 = if it fits after step 1

# ---------------------------------------------------------------------------------------------------------------
_C.SOLVER = CN()
_C.SOLVER.OPTIMIZER = "Adam"  # "SGD", "Adam", "AdamW" or "AMSGrad" (Reddi et al. 2018; torchreid's OSNet recipe)
_C.SOLVER.BASE_LR = 3.5e-4  # learning rate after warm-up (bag of tricks, Adam)
_C.SOLVER.BIAS_LR_FACTOR = 1.0  # learning-rate multiplier for biases (fast-reid, detectron2)
_C.SOLVER.HEADS_LR_FACTOR = 1.0  # LR multiplier of the heads: Baseline's head, MGN's heads + classifier (fast-reid)
_C.SOLVER.MOMENTUM = 0.9  # SGD momentum
_C.SOLVER.NESTEROV = True  # SGD with Nesterov momentum (fast-reid SOLVER.NESTEROV; TransReID: False, plain momentum)
_C.SOLVER.WEIGHT_DECAY = 5e-4  # L2 weight decay
_C.SOLVER.WEIGHT_DECAY_BIAS = 5e-4  # weight decay of biases, norm-layer biases included (fast-reid, detectron2)
_C.SOLVER.WEIGHT_DECAY_NORM = 5e-4  # weight decay of norm-layer weights (fast-reid, detectron2)
_C.SOLVER.IMS_PER_BATCH = 64  # images per batch (over all GPUs); P x K with K = DATALOADER.NUM_INSTANCE
_C.SOLVER.MAX_EPOCHS = 120  # training epochs
_C.SOLVER.SCHED = "multistep"  # "multistep" or "cosine" (after warm-up)
_C.SOLVER.STEPS = [40, 90]  # epochs where multistep multiplies the LR by GAMMA (fast-reid; the BoT code: [40, 70])
# When the decay advances: "iteration" (at the fractional epoch, every iteration; STEPS count from the start of
# training, the cosine from the end of warm-up) or "epoch" (a torch scheduler stepped at the end of each epoch once
# warm-up and DELAY_EPOCHS are over; STEPS and the cosine count those steps).
_C.SOLVER.SCHED_STEP = "iteration"  # "epoch": fast-reid's LRScheduler hook, torchreid's engine; "timm_epoch": TransReID's timm cosine
_C.SOLVER.DELAY_EPOCHS = 0  # with SCHED_STEP epoch: epochs of constant LR before the decay (fast-reid SBS: 30)
_C.SOLVER.GAMMA = 0.1  # multistep decay factor
_C.SOLVER.ETA_MIN_LR = 1e-7  # final LR of the cosine schedule, every parameter group's (torch CosineAnnealingLR)
_C.SOLVER.WARMUP_EPOCHS = 10  # linear warm-up length in epochs (0 disables)
_C.SOLVER.WARMUP_FACTOR = 0.1  # LR multiplier at the start of warm-up
_C.SOLVER.WARMUP_ITERS = 0  # linear warm-up length in iterations instead of WARMUP_EPOCHS (fast-reid Base-*.yml: 2000)
_C.SOLVER.FREEZE_ITERS = 0  # iterations MODEL.FREEZE_LAYERS stay frozen (fast-reid SOLVER.FREEZE_ITERS; SBS: 1000)
_C.SOLVER.FREEZE_EPOCHS = 0  # epochs they stay frozen (torchreid fixbase_epoch; OSNet: 10)
_C.SOLVER.CHECKPOINT_PERIOD = 1  # write a checkpoint every N epochs (and always after the last)
_C.SOLVER.LOG_PERIOD = 20  # log training losses every N iterations
_C.SOLVER.GRAD_CLIP = 0.0  # clip gradient norm to this value (0 = off)
_C.SOLVER.AMP = "off"  # mixed precision: "off", "bf16" or "fp16" (autocast; fp16 adds a GradScaler); losses stay fp32
_C.SOLVER.FUSED = True  # fused Adam/AdamW/SGD step (one kernel for all parameters) when training on CUDA
_C.SOLVER.EMA = CN()
_C.SOLVER.EMA.ENABLED = False  # evaluate and save a moving average of the weights (timm ModelEmaV2 / detectron2 EMA)
_C.SOLVER.EMA.DECAY = 0.9998  # EMA decay per iteration (timm), warmed up as min(DECAY, (1+n)/(10+n)) (TensorFlow EMA)

# ---------------------------------------------------------------------------------------------------------------
_C.TEST = CN()
_C.TEST.EVAL_PERIOD = 10  # evaluate every N epochs during training (and always at the end)
# With a retrieval first test set also recall@K (K of the papers' tables, in TEST.RECALL_KS), map@r, r_precision, nmi.
_C.TEST.BEST_METRIC = "mAP"  # first test set's metric choosing model_best.pt: rank1/5/10, mAP, mINP (detectron2)
_C.TEST.IMS_PER_BATCH = 128  # images per batch for feature extraction
_C.TEST.METRIC = "cosine"  # "cosine" (on L2-normalised features) or "euclidean"
_C.TEST.FLIP = False  # average the embeddings of each image and its horizontal flip
_C.TEST.MAX_RANK = 50  # length of the CMC curve
_C.TEST.CROSS_CAMERA = True  # drop same-id same-camera gallery items (Zheng et al. 2015); False: a query's own file
_C.TEST.VERIFY_FAR = 1e-3  # FAR whose distance threshold metrics.json / model_final.pt keep (fast-reid TEST.ROC)
_C.TEST.RERANK = CN()
_C.TEST.RERANK.ENABLED = False  # k-reciprocal re-ranking (Zhong et al. 2017); tools/test.py reports both
_C.TEST.RERANK.K1 = 20  # k1 of k-reciprocal neighbours (Zhong et al. 2017)
_C.TEST.RERANK.K2 = 6  # k2 of local query expansion (Zhong et al. 2017)
_C.TEST.RERANK.LAMBDA = 0.3  # weight of the original distance in the final one (Zhong et al. 2017)
_C.TEST.AQE = CN()
_C.TEST.AQE.ENABLED = False  # alpha query expansion (Radenovic et al. 2018; fast-reid TEST.AQE), reported as +aqe
_C.TEST.AQE.QE_TIME = 1  # expansion rounds (fast-reid TEST.AQE.QE_TIME)
_C.TEST.AQE.QE_K = 5  # neighbours averaged, the vector itself included (fast-reid TEST.AQE.QE_K)
_C.TEST.AQE.ALPHA = 3.0  # neighbour weight = cosine similarity ** ALPHA (Radenovic et al. 2018; fast-reid)

# ---------------------------------------------------------------------------------------------------------------
_C.VIS = CN()
_C.VIS.REPORT = True  # after train/test write OUTPUT_DIR/report.html and plots/ (CMC, curves, distances, worst queries)
_C.VIS.TOPK = 10  # gallery images per ranked list (after the protocol's same-camera and junk removal)
_C.VIS.NUM_MISSED = 3  # lowest-ranked true matches shown after the top-k of a ranked list (0 = none)
_C.VIS.QUERIES_PER_SHEET = 6  # ranked lists (rows) per PNG sheet
_C.VIS.REPORT_SHEETS = 2  # sheets of the worst-AP queries drawn into the report, per test set (0 = none)
_C.VIS.SHOW_JUNK = True  # draw junk gallery images (pid -1, kept by DATASETS.KEEP_JUNK) greyed; False hides them
_C.VIS.HIST_MAX_QUERIES = 2000  # queries (evenly spaced) in the distance histogram; bounds its cost on large sets
_C.VIS.TENSORBOARD = False  # training scalars in OUTPUT_DIR/tensorboard/ (detectron2 writer; pip install tensorboard)

# ---------------------------------------------------------------------------------------------------------------
# Deep metric learning benchmarks (CUB200, Cars196, SOP, InShop; reid.evaluation.retrieval).
_C.TEST.RECALL_KS = [1, 2, 4, 8]  # Recall@K of retrieval sets (Oh Song et al. 2016; SOP 1,10,100,1000; In-shop 1..50)
_C.TEST.NMI = False  # also NMI of k-means clusters of a retrieval set's query features (Musgrave et al. 2020; slow)
# Crops of the metric learning papers (research-ms-loss: Resize(256), RandomResizedCrop(227, scale 0.16-1) in
# training, CenterCrop(227) at test time).
_C.INPUT.CROP = CN()
_C.INPUT.CROP.RESIZE = []  # [] = off; [s]: shorter side to s, [h, w]: to h x w; then a crop of SIZE_TRAIN / SIZE_TEST
_C.INPUT.CROP.SCALE = [0.08, 1.0]  # area share of the training crop, uniform (torchvision; research-ms-loss: 0.16-1)
_C.INPUT.CROP.RATIO = [0.75, 1.3333333333333333]  # width / height of the training crop, log-uniform (torchvision)
_C.MODEL.FREEZE_BN = False  # every BatchNorm in eval mode when training: statistics kept (research-ms-loss set_bn_eval)

# ---------------------------------------------------------------------------------------------------------------
# Video re-ID (tracklets of MARS, iLIDSVID, PRID2011, DukeMTMCVideo) and evaluation protocols of the benchmarks.
_C.DATALOADER.SEQ_LEN = 4  # frames per training tracklet (Gao & Nevatia 2018 use 4; torchreid's default 15)
_C.DATALOADER.SEQ_SAMPLE = "chunks"  # "chunks" (one random frame per chunk, Li et al. 2018), "evenly", "random" (torchreid)
_C.TEST.SEQ_LEN = 0  # frames per test tracklet: 0 = all of them, in chunks of TEST.IMS_PER_BATCH; N = N evenly spaced
_C.MODEL.TEMPORAL_POOL = "avg"  # frames -> tracklet: "avg" (temporal pooling, Gao & Nevatia 2018) or "attention" (QAN)
_C.TEST.SINGLE_SHOT_CMC = False  # CMC with one random gallery image per identity, exact expectation (CUHK03 classic)
