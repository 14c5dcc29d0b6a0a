"""Every fusion method MedFusion offers, in one table (see registry.py for the contract)."""
from .base import Option
from .registry import FAMILIES, MethodInfo, Registry

REGISTRY = Registry([
    MethodInfo(
        name="average", title="Average", kind="classic", module="pixelwise", factory="build_average",
        summary="Pixel-wise mean of the two sources; the baseline every method is compared with.",
        reference="Baseline pixel averaging, e.g. Zhang, 'Multi-source remote sensing data fusion', 2010; "
                  "used as the reference rule throughout the fusion literature.",
        crop_margin=0),
    MethodInfo(
        name="max", title="Max-abs", kind="classic", module="pixelwise", factory="build_max",
        summary="Pixel-wise maximum (sources are non-negative, so max-abs equals max).",
        reference="Choose-max rule, e.g. Li, Manjunath & Mitra, 'Multisensor image fusion using the wavelet "
                  "transform', Graphical Models and Image Processing 57(3), 1995.",
        crop_margin=0),
    MethodInfo(
        name="pca", title="PCA-weighted", kind="classic", module="pixelwise", factory="build_pca",
        summary="Weights from the principal eigenvector of the two sources' covariance, per slice.",
        reference="Naidu & Raol, 'Pixel-level image fusion using wavelets and principal component analysis', "
                  "Defence Science Journal 58(3), 2008."),
    MethodInfo(
        name="laplacian", title="Laplacian pyramid", kind="classic", module="laplacian", factory="build",
        summary="Laplacian pyramid: averaged base level, max-abs detail coefficients.",
        reference="Burt & Adelson, 'The Laplacian pyramid as a compact image code', IEEE Trans. Commun. 31(4), "
                  "1983; fusion rule after Burt & Kolczynski, ICCV 1993.",
        options={"levels": Option(4, "number of pyramid detail levels", minimum=1)}),
    MethodInfo(
        name="dwt", title="DWT", kind="classic", module="dwt", factory="build",
        summary="Discrete wavelet transform (PyWavelets): averaged approximation, max-abs details.",
        reference="Li, Manjunath & Mitra, 'Multisensor image fusion using the wavelet transform', Graphical "
                  "Models and Image Processing 57(3), 1995.",
        options={"wavelet": Option("db2", "PyWavelets wavelet name (discrete), e.g. db2, haar, sym4, bior2.2"),
                 "levels": Option(3, "decomposition levels", minimum=1)}),
    MethodInfo(
        name="gff", title="Guided filtering (GFF)", kind="classic", module="gff", factory="build",
        summary="Two-scale decomposition with saliency weight maps refined by guided filters.",
        reference="Li, Kang & Hu, 'Image fusion with guided filtering', IEEE Trans. Image Process. 22(7), 2013.",
        # saliency 3x3 Laplacian (1) + 11x11 Gaussian (5), then a guided filter of radius 45 (two box means in a
        # row: 90); the 31x31 base mean (15) is within that
        crop_margin=96),
    MethodInfo(
        name="mfenet", family="cnn", title="MFEnet", kind="network", module="mfenet", factory="build",
        summary="Multi-scale dilated-conv autoencoder: max-abs fusion of encoder features, decoded, plus the "
                "sources' Canny edges (edge enhancement).",
        reference="Xiao, Li, Zhang, Xie & Li, 'Medical image fusion based on multi-scale feature learning and "
                  "edge enhancement', Laser & Optoelectronics Progress 59(6): 0617029, 2022, "
                  "doi:10.3788/LOP202259.0617029.",
        options={"rule": Option("max", "feature fusion rule: max (max-abs, the paper's and the best measured), "
                                       "add, average, softmax", choices=("max", "add", "average", "softmax")),
                 "edge_weight": Option(0.0, "weight w of the Canny edges added to the fused image: default 0 = off (the "
                                      "paper's 1 saturates ~19% of the foreground white; reports/defaults/); "
                                      "the paper's setting: 1", minimum=0, slider_maximum=2)},
        reduced_precision=("bf16", "fp16", "int8"),
        # C1 3x3 (1) + widest dilated 3x3, dilation 5 (5) + C5 1x1 (0) + C6 (1) + C7-C10 3x3 (4) = 11;
        # Canny's thresholds follow each slice's gradient statistics, so edge_weight != 0 is not local
        crop_margin=11, crop_margin_unless=("edge_weight",)),
    MethodInfo(
        name="edpsn", family="cnn", title="EDPSN", kind="network", module="edpsn", factory="build",
        summary="Entropy-aware dynamic path selection: CCG edge enhancement of the functional image, 3x3 local "
                "entropy splits pixels into low / medium / high information, one multi-scale path per level.",
        reference="Qu, Huang, Shi, Liu & Tang, 'Entropy-aware dynamic path selection network for multi-modality "
                  "medical image fusion', Information Fusion 123: 103312, 2025, doi:10.1016/j.inffus.2025.103312.",
        options={"eem_weight": Option(1.0, "weight w of the central concentration gradient added to the second "
                                     "(functional) source by the edge enhancement module (default and the "
                                     "paper's: 1, the best measured; 0 = off)", minimum=0,
                                     slider_maximum=2)},
        reduced_precision=("bf16", "fp16")),
    MethodInfo(
        name="fusioncinn", family="cnn", title="FusionCINN", kind="network", module="fusioncinn", factory="build",
        summary="Conditional invertible network: both sources analysed to latents with Haar wavelet conditions, "
                "latents fused (mean + RAM attention), inverted with max-abs fused wavelet conditions.",
        reference="'Multi-modal medical image fusion based on conditional reversible neural networks' "
                  "(in Chinese), Computer Measurement & Control (Jisuanji Celiang yu Kongzhi) 33(1): 147-154, 2025; "
                  "authors not legible in the available text.",
        reduced_precision=("bf16", "fp16")),
    MethodInfo(
        name="medfusionnet", family="cnn", title="MedFusion-Net", kind="network", module="medfusionnet", factory="build",
        summary="MedFusion's own small network: a learnt saliency weight (from a soft pixel-max start) mixes the "
                "two sources, plus a small bounded correction; full-resolution and 4x-downsampled context branches.",
        reference="MedFusion project, 'MedFusion-Net' (this repository: MedFusionLib/methods/medfusionnet.py and "
                  "reports/flagship/README.md), 2026; loss after the metrics of Zhao et al., 'CDDFuse', CVPR 2023.",
        reduced_precision=("bf16", "fp16")),
    MethodInfo(
        name="ddcgan", family="gan", title="DDcGAN", kind="network", module="ddcgan", factory="build",
        summary="GAN: a small dense-block generator trained against two discriminators, one per source "
                "(least-squares objective, spectral norm), plus intensity and gradient content terms.",
        reference="Ma, Xu, Jiang, Mei & Zhang, 'DDcGAN: a dual-discriminator conditional generative adversarial "
                  "network for multi-resolution image fusion', IEEE Trans. Image Process. 29: 4980-4995, 2020; "
                  "objective after Mao et al., 'Least squares GANs', ICCV 2017.",
        reduced_precision=("bf16", "fp16"),
        crop_margin=7),  # seven 3x3 convolutions, all at full resolution
    MethodInfo(
        name="unetfusion", family="unet", title="U-Net (FW-Net)", kind="network", module="unetfusion",
        factory="build",
        summary="U-Net: a 3-level U-Net fuses the two sources; trained with a second U-Net that must reconstruct "
                "both sources from the fused image (FW-Net's W), plus intensity and gradient content terms.",
        reference="Fan, Huang, Wang et al., 'A semantic-based medical image fusion approach' (FW-Net), "
                  "arXiv:1906.00225, 2019; U-Net after Ronneberger, Fischer & Brox, MICCAI 2015.",
        reduced_precision=("bf16", "fp16")),
    MethodInfo(
        name="swinfusion", family="transformer", title="SwinFusion-S", kind="network", module="swinfusion",
        factory="build",
        summary="Small CNN-Transformer hybrid: CNN shallow features, Swin window / shifted-window self-attention "
                "within each source, cross-attention between them, a reconstruction head giving a weight map "
                "(from a soft pixel-max start) and a bounded residual.",
        reference="After Ma, Tang, Fan, Huang, Mei & Ma, 'SwinFusion: cross-domain long-range learning for general "
                  "image fusion via Swin Transformer', IEEE/CAA J. Autom. Sinica 9(7): 1200-1217, 2022, "
                  "doi:10.1109/JAS.2022.105686 (sized for CPU; departures in methods/swinfusion.py).",
        reduced_precision=("bf16", "fp16")),
    MethodInfo(
        name="resnetzca", family="deep-features", title="ResNet-ZCA", kind="network", module="resnetzca",
        factory="build",
        summary="Deep features of a small ResNet-style encoder (trained here as an autoencoder), ZCA-whitened; "
                "their l1-norm activity gives per-pixel weight maps for the sources (or their detail layers).",
        reference="Li, Wu & Durrani, 'Infrared and visible image fusion with ResNet and zero-phase component "
                  "analysis', Infrared Physics & Technology 102: 103039, 2019, doi:10.1016/j.infrared.2019.103039 "
                  "(encoder trained by this project; departures in methods/resnetzca.py).",
        options={"scales": Option("one", "one: the weight maps mix the sources (the paper's); two: they mix the "
                                         "detail layers, the 31x31 mean base layers are averaged",
                                  choices=("one", "two"))},
        reduced_precision=("bf16", "fp16")),
])

# The method used when none is named (CLI, demo, Slicer): the best mean rank over the 17 metrics on the validation
# split among the variants that look clean (scripts/choose_defaults.py -> reports/defaults/defaults.md).
DEFAULT_METHOD = "medfusionnet"
