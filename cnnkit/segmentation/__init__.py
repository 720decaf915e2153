"""Instance segmentation: images with one mask per object (:mod:`.data`), torchvision's Mask R-CNN on a zoo
backbone (:mod:`.model`) and COCO box and mask mAP (:mod:`.metrics`)."""
