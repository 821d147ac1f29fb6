// Opens a generated embryo, segments it, evaluates against the ground truth and
// writes what it found to a result file (checked by fiji-plugin/Makefile; in -batch mode
// the Log, with the plugin's "QCANet plan: {...}" line, goes to stdout, which it checks too).
// argument: "EMBRYO.tif,TRUTH.tif,RESULT.txt"
args = split(getArgument(), ",");
setBatchMode(true);
open(args[0]);
run("Segment Nuclei 3D", "voxel_z=1.75 voxel_y=0.8 voxel_x=0.8 model=[Embedded default] device=CPU foreground_threshold=-1 centre_threshold=-1 minimum_volume=-1 measure");
lab = getTitle();
getVoxelSize(w, h, d, unit);
bd = bitDepth();
ns = nSlices;
nuclei = Table.size("Nuclei");
open(args[1]);
gt = getTitle();
run("Evaluate Segmentation", "prediction=[" + lab + "] ground_truth=[" + gt + "]");
seg = Table.get("SEG", 0, "Segmentation scores");
iou = Table.get("IoU", 0, "Segmentation scores");
ngt = Table.get("n_gt", 0, "Segmentation scores");
ap50 = Table.get("AP50", 0, "Segmentation scores");
ap70 = Table.get("AP70", 0, "Segmentation scores");
ap90 = Table.get("AP90", 0, "Segmentation scores");
s = "title=" + lab + "\nbitdepth=" + bd + "\nslices=" + ns + "\nvoxel=" + d + "," + h + "," + w + "\nunit=" + unit;
s = s + "\nmeasured=" + nuclei + "\nn_gt=" + ngt + "\nseg=" + seg + "\niou=" + iou;
s = s + "\nap50=" + ap50 + "\nap70=" + ap70 + "\nap90=" + ap90 + "\n";
// versions, runtime and model in the Log: the plugin ships ONNX Runtime's OpenVINO build
run("About QCANet");
File.saveString(s, args[2]);
print(s);
