// A missing model file must end in an error message, not a crash.
args = split(getArgument(), ",");
setBatchMode(true);
open(args[0]);
run("Segment Nuclei 3D", "voxel_z=1.75 voxel_y=0.8 voxel_x=0.8 model=[ONNX files] nsn_model=/nonexistent/nsn.onnx ndn_model=/nonexistent/ndn.onnx device=CPU foreground_threshold=-1 centre_threshold=-1 minimum_volume=-1");
File.saveString("images open after the error: " + nImages + "\n", args[1]);
