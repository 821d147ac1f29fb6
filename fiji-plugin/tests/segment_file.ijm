// Segments a stack file block by block (Plugins > QCANet > Segment File), then asks for the
// labels over the input (refused: the Log says why, the input stays as it was) and writes
// what it saw to a result file (checked by fiji-plugin/Makefile against `qcanet segment`).
// argument: "EMBRYO.tif,LABELS.tif,RESULT.txt"
args = split(getArgument(), ",");
setBatchMode(true);
common = " use_file_calibration channel=1 model=[Embedded default] device=CPU foreground_threshold=-1 centre_threshold=-1 minimum_volume=-1";
run("Segment File (block by block)", "input=[" + args[0] + "] output=[" + args[1] + "] blocks=[Core size] core_z=24 core_y=64 core_x=64 measure open_labels" + common);
lab = getTitle();
s = "title=" + lab + "\nslices=" + nSlices + "\nbitdepth=" + bitDepth();
Stack.getStatistics(n, mean, min, max);
s = s + "\nmax_label=" + max;
// the input as the output: refused before any work
run("Segment File (block by block)", "input=[" + args[0] + "] output=[" + args[0] + "] blocks=Automatic" + common);
s = s + "\nimages_open=" + nImages + "\n";
File.saveString(s, args[2]);
print(s);
