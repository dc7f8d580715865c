; Inno Setup script for TickDesk: a per-user installer of the PyInstaller bundle.
;
;   pyinstaller --noconfirm build.spec                    (makes dist\TickDesk\)
;   iscc /DAppVersion=1.2.3 installer\tickdesk.iss        (makes dist\installer\TickDesk-1.2.3-setup.exe)
;
; Needs Inno Setup 6.3 or later (x64compatible).  The release workflow
; (.github/workflows/windows-release.yml) runs both steps; see docs/packaging.md.
;
; Per-user: no administrator rights, installs to %LOCALAPPDATA%\Programs\TickDesk with a
; Start-menu entry for the current user.  An administrator may still run it with /ALLUSERS
; for a machine-wide install.  Settings and the order journal live in %LOCALAPPDATA%\TickDesk
; (workers.config.data_dir), never in the install folder, so upgrades and uninstalls keep them.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef BundleDir
  ; relative to this script's folder
  #define BundleDir "..\dist\TickDesk"
#endif
#define AppName "TickDesk"
#define AppExe "TickDesk.exe"

[Setup]
; AppId identifies the product across versions (upgrades, uninstall entry): never change it.
AppId={{50F19E1C-2058-4886-BF95-F466992153C1}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=TickDesk
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; per-user install, no UAC prompt; /ALLUSERS on the command line for a machine-wide one
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=commandline
; the bundle is 64-bit only; Windows 10 1809 or later (Python 3.11 and Qt 6 need Windows 10)
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0.17763
OutputDir=..\dist\installer
OutputBaseFilename={#AppName}-{#AppVersion}-setup
SetupIconFile=..\resources\icons\tickdesk.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName}
WizardStyle=modern
Compression=lzma2/max
SolidCompression=yes
; TickDesk and its workers run from {app}\TickDesk.exe: an upgrade must close them first.
CloseApplications=yes
RestartApplications=no

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[InstallDelete]
; an upgrade replaces the bundle as a whole: no stale module from an older version survives
Type: filesandordirs; Name: "{app}\_internal"

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; Comment: "TickDesk trading workstation"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

; [UninstallDelete] is deliberately absent: %LOCALAPPDATA%\TickDesk holds the trader's
; settings and the exchange journal (orders and fills); the uninstaller leaves it alone.
